//! Mainland mobile numbers, checked with `phonenumber` (a port of Google's
//! libphonenumber) rather than a hand-written pattern: number ranges change
//! and libphonenumber's metadata tracks them.

use phonenumber::{Type, country};
use unicode_general_category::{GeneralCategory, get_general_category};

use super::columns::{Column, Value};
use super::model::{Event, FormatValidation, OperationType};
use super::rules::{Findings, RuleError, rule};

/// The national significant number (11 digits) of a valid mainland mobile
/// number, or what is wrong with it.
pub fn normalize_mobile(raw: &str) -> Result<String, String> {
    if let Some(national) = plain_mobile(raw) {
        return Ok(national.to_string());
    }
    let ascii = ascii_digits(raw);
    let parsed = phonenumber::parse(Some(country::Id::CN), &ascii)
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

/// The common case without a full parse (which costs more than decoding
/// the whole event): eleven ASCII digits that libphonenumber would take as
/// they are (no national prefix or carrier code to strip) and that the
/// mainland's mobile ranges match. Anything else takes the full parse.
fn plain_mobile(raw: &str) -> Option<&str> {
    let b = raw.as_bytes();
    if b.len() != 11 || b[0] != b'1' || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let meta = phonenumber::metadata::DATABASE.by_id("CN")?;
    if meta
        .national_prefix_for_parsing()
        .and_then(|p| p.find(raw))
        .is_some_and(|m| m.start() == 0)
    {
        return None;
    }
    // libphonenumber's number type: the general pattern, none of the
    // special services it checks first, then the mobile pattern.
    let d = meta.descriptors();
    let matches =
        |x: Option<&phonenumber::metadata::Descriptor>| x.is_some_and(|x| x.is_match(raw));
    let special = [
        d.premium_rate(),
        d.toll_free(),
        d.shared_cost(),
        d.voip(),
        d.personal_number(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ];
    (d.general().is_match(raw) && !special.into_iter().any(matches) && matches(d.mobile()))
        .then_some(raw)
}

/// Unicode decimal digits (full-width `１３８`, Arabic-Indic, mathematical
/// …) as ASCII digits and the full-width plus as `+`, as libphonenumber
/// normalises them before parsing; the `phonenumber` crate reads only
/// ASCII digits. Customer data typed on Chinese input methods carries
/// full-width digits.
fn ascii_digits(raw: &str) -> std::borrow::Cow<'_, str> {
    if raw.is_ascii() {
        return raw.into();
    }
    raw.chars()
        .map(|c| match c {
            '＋' => '+',
            c if !c.is_ascii() && is_decimal_digit(c) => {
                char::from_digit(decimal_value(c), 10).expect("a decimal digit")
            }
            c => c,
        })
        .collect::<String>()
        .into()
}

fn is_decimal_digit(c: char) -> bool {
    get_general_category(c) == GeneralCategory::DecimalNumber
}

/// Unicode encodes every decimal digit in runs of ten, zero to nine, and
/// runs of the same script may follow each other directly (the
/// mathematical digits): a digit's value is its distance from the start of
/// its block of decimal digits, modulo ten.
fn decimal_value(c: char) -> u32 {
    let mut start = c as u32;
    while let Some(prev) = start.checked_sub(1).and_then(char::from_u32) {
        if !is_decimal_digit(prev) {
            break;
        }
        start -= 1;
    }
    (c as u32 - start) % 10
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

    /// Undoes Python's `unicode_escape` (how the table keeps its inputs
    /// readable): `\uXXXX`, `\UXXXXXXXX`, `\xXX`, `\\`.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let width = match chars.next() {
                Some('u') => 4,
                Some('U') => 8,
                Some('x') => 2,
                Some(other) => {
                    out.push(other);
                    continue;
                }
                None => break,
            };
            let hex: String = chars.by_ref().take(width).collect();
            let code = u32::from_str_radix(&hex, 16).expect("hex escape");
            out.push(char::from_u32(code).expect("a character"));
        }
        out
    }

    /// Ranges libphonenumber's newer metadata knows and the `phonenumber`
    /// crate's (9.0.33) does not yet: govsync holds such numbers for review
    /// (README, "Phone numbers").
    const NEWER_RANGES: [&str; 1] = ["1610"];

    /// govsync's phone rule against libphonenumber's own verdicts
    /// (tests/data/phone-verdicts.tsv, made by scripts/phone-verdicts):
    /// full-width and other Unicode digits, +86/0086/86 forms, punctuation.
    #[test]
    fn agrees_with_libphonenumber() {
        let table = include_str!("../../tests/data/phone-verdicts.tsv");
        let mut checked = 0;
        let mut disagree = Vec::new();
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let (input, verdict) = line.split_once('\t').expect("input<TAB>verdict");
            let input = unescape(input);
            let ours = normalize_mobile(&input);
            let expected = verdict.strip_prefix("mobile ");
            let newer = expected.is_some_and(|n| NEWER_RANGES.iter().any(|r| n.starts_with(r)));
            checked += 1;
            match (expected, &ours) {
                (Some(n), Ok(got)) if n == got => {}
                (Some(_), Err(_)) if newer => {}
                (None, Err(_)) => {}
                _ => disagree.push(format!(
                    "{input:?}: libphonenumber {verdict}, govsync {ours:?}"
                )),
            }
        }
        assert!(checked > 250, "the table has {checked} rows");
        assert!(
            disagree.is_empty(),
            "{} disagreements:\n{}",
            disagree.len(),
            disagree.join("\n")
        );
    }

    /// The shortcut for plain eleven-digit numbers says what the full parse
    /// says, over every mainland prefix of three and four digits.
    #[test]
    fn the_plain_shortcut_agrees_with_the_full_parse() {
        let full = |n: &str| -> Option<String> {
            let parsed = phonenumber::parse(Some(country::Id::CN), n).ok()?;
            (parsed.code().value() == 86
                && parsed.is_valid()
                && matches!(
                    parsed.number_type(&phonenumber::metadata::DATABASE),
                    Type::Mobile | Type::FixedLineOrMobile
                ))
            .then(|| parsed.national().value().to_string())
        };
        let mut shortcut = 0;
        for prefix in 1000..2000 {
            for tail in ["0000000", "5555555", "9999999"] {
                let n = format!("{prefix}{tail}");
                if let Some(got) = plain_mobile(&n) {
                    shortcut += 1;
                    assert_eq!(full(&n).as_deref(), Some(got), "{n}");
                }
            }
        }
        assert!(
            shortcut > 1000,
            "the shortcut covers the mobile ranges: {shortcut}"
        );
    }
}
