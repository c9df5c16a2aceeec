//! Mainland mobile numbers, checked with `phonenumber` (a port of Google's
//! libphonenumber) rather than a hand-written pattern: number ranges change
//! and libphonenumber's metadata tracks them.

use phonenumber::{Type, country};

use super::columns::{Column, Value};
use super::model::{Event, FormatValidation, OperationType};
use super::rules::{Findings, RuleError, rule};

/// The national significant number (11 digits) of a valid mainland mobile
/// number, or what is wrong with it.
pub fn normalize_mobile(raw: &str) -> Result<String, String> {
    let parsed = phonenumber::parse(Some(country::Id::CN), raw)
        .map_err(|e| format!("not a phone number ({e})"))?;
    if parsed.code().value() != 86 {
        return Err(format!(
            "country code +{}, expected +86",
            parsed.code().value()
        ));
    }
    if !parsed.is_valid() {
        return Err("not a valid number in the mainland numbering plan".into());
    }
    match parsed.number_type(&phonenumber::metadata::DATABASE) {
        Type::Mobile | Type::FixedLineOrMobile => Ok(parsed.national().value().to_string()),
        other => Err(format!("a {other:?} number, expected a mobile number")),
    }
}

/// The phone rules: govsync's own check of the number against the
/// engine's verdict.
pub(super) fn apply_rules(e: &Event, found: &mut Findings) -> Result<(), RuleError> {
    let op = e.sync_operation.operation_type;
    let raw = e.original_data.phone.as_deref().unwrap_or_default();
    let checked = normalize_mobile(raw);
    let engine_valid = e.governance_result.format_validation != Some(FormatValidation::Invalid);
    if !engine_valid && op != OperationType::FlagForReview {
        return Err(rule(
            "governance_result.format_validation",
            format!(
                "the engine found the number invalid, so the operation must be flag_for_review, not {}",
                op.as_str()
            ),
        ));
    }
    found
        .seen_values
        .push((Column::Phone, Value::Text(raw.to_string())));
    match checked {
        Ok(national) => found.data_value = Some((Column::Phone, Value::Text(national))),
        Err(why) if engine_valid => found.hold.push(format!(
            "the engine says the phone number is valid but govsync's check disagrees: {why}"
        )),
        Err(why) => found
            .flag
            .push(format!("govsync's check of the phone number: {why}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobiles_normalise() {
        assert_eq!(normalize_mobile("13812345678").unwrap(), "13812345678");
        assert_eq!(
            normalize_mobile("+86 138 1234 5678").unwrap(),
            "13812345678"
        );
        assert_eq!(
            normalize_mobile("+86-199-1234-5678").unwrap(),
            "19912345678"
        );
    }

    #[test]
    fn non_mobiles_are_rejected() {
        assert!(normalize_mobile("1381234567").is_err(), "10 digits");
        assert!(
            normalize_mobile("02584561234").is_err(),
            "Nanjing fixed line"
        );
        assert!(normalize_mobile("+1 650 253 0000").is_err(), "not +86");
        assert!(normalize_mobile("hello").is_err());
        assert!(
            normalize_mobile("10012345678").is_err(),
            "no 100 mobile range"
        );
    }
}
