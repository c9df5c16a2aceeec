//! Mainland resident identity numbers (GB 11643-1999).
//!
//! 18 characters: a 6-digit administrative division code (GB/T 2260), an
//! 8-digit birth date, a 3-digit sequence and a check character computed
//! over the first 17 digits (ISO 7064 MOD 11-2).

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::columns::{Column, Value};
use super::model::{CheckResult, Event, OperationType};
use super::rules::{Findings, RuleError, RuleSet, rule};

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Province-level codes of GB/T 2260 (first two digits).
const PROVINCES: [u8; 34] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
];

/// The check character for 17 leading digits, or `None` if they are not 17
/// ASCII digits.
pub fn check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = b
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    Some(CHECK_CHARS[(sum % 11) as usize])
}

/// What is wrong with an ID number; each says what the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdFinding {
    /// Not 15 or 18 characters of the right kind.
    Format(String),
    /// A pre-1999 15-digit number: flagged, never applied.
    Legacy15,
    CheckDigit {
        expected: char,
        found: char,
    },
    UnknownProvince(String),
    /// The number's division code differs from the event's county.
    RegionMismatch {
        id_region: String,
        county: String,
    },
    BirthDate(String),
}

impl std::fmt::Display for IdFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdFinding::Format(m) => write!(f, "format: {m}"),
            IdFinding::Legacy15 => {
                write!(f, "15-digit legacy number: needs conversion by a person")
            }
            IdFinding::CheckDigit { expected, found } => {
                write!(
                    f,
                    "GB 11643 check digit: expected {expected}, found {found}"
                )
            }
            IdFinding::UnknownProvince(p) => {
                write!(f, "division code starts with {p}, not a province")
            }
            IdFinding::RegionMismatch { id_region, county } => {
                write!(
                    f,
                    "division code {id_region} differs from county_code {county}"
                )
            }
            IdFinding::BirthDate(m) => write!(f, "birth date: {m}"),
        }
    }
}

/// Checks an ID number as of `at` (the governance time). Returns every
/// finding; an empty list means the number passes.
pub fn check(id: &str, county: Option<&str>, at: NaiveDate, max_age: u32) -> Vec<IdFinding> {
    let id = id.trim();
    let n = id.chars().count();
    if n == 15 && id.bytes().all(|c| c.is_ascii_digit()) {
        return vec![IdFinding::Legacy15];
    }
    if n != 18 {
        return vec![IdFinding::Format(format!("{n} characters, expected 18"))];
    }
    let b = id.as_bytes();
    if !b[..17].iter().all(u8::is_ascii_digit) {
        return vec![IdFinding::Format(
            "the first 17 characters must be digits".into(),
        )];
    }
    let last = (b[17] as char).to_ascii_uppercase();
    if !(last.is_ascii_digit() || last == 'X') {
        return vec![IdFinding::Format(
            "the last character must be a digit or X".into(),
        )];
    }
    let mut out = Vec::new();
    let expected = check_char(&id[..17]).expect("17 digits checked above");
    if expected != last {
        out.push(IdFinding::CheckDigit {
            expected,
            found: last,
        });
    }
    let prov: u8 = id[..2].parse().unwrap_or(0);
    if !PROVINCES.contains(&prov) {
        out.push(IdFinding::UnknownProvince(id[..2].to_string()));
    }
    if let Some(county) = county
        && county != &id[..6]
    {
        out.push(IdFinding::RegionMismatch {
            id_region: id[..6].to_string(),
            county: county.to_string(),
        });
    }
    match NaiveDate::parse_from_str(&id[6..14], "%Y%m%d") {
        Err(_) => out.push(IdFinding::BirthDate(format!(
            "{} is not a date",
            &id[6..14]
        ))),
        Ok(born) if born > at => out.push(IdFinding::BirthDate(format!("{born} is after {at}"))),
        Ok(born) => {
            let age = age_at(born, at);
            if age > max_age {
                out.push(IdFinding::BirthDate(format!(
                    "age {age} at {at} is over {max_age}"
                )));
            }
        }
    }
    out
}

fn age_at(born: NaiveDate, at: NaiveDate) -> u32 {
    let mut years = at.year() - born.year();
    if (at.month(), at.day()) < (born.month(), born.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

/// The ID-card rules: govsync's own GB 11643 check against the engine's
/// verdict, and the suggested correction (never applied, always reviewed).
pub(super) fn apply_rules(
    e: &Event,
    rules: &RuleSet,
    governed_at: DateTime<Utc>,
    found: &mut Findings,
) -> Result<(), RuleError> {
    let g = &e.governance_result;
    let op = e.sync_operation.operation_type;
    let id = e
        .original_data
        .id_card
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    let county = if rules.id_card_region_match {
        e.county_code.as_deref()
    } else {
        None
    };
    let findings = check(&id, county, governed_at.date_naive(), rules.id_card_max_age);
    let engine_passed = g.checksum_validation == Some(CheckResult::Passed)
        && g.format_check != Some(CheckResult::Failed);
    if !engine_passed && op != OperationType::FlagForReview {
        return Err(rule(
            "governance_result.checksum_validation",
            format!(
                "the engine found the number invalid, so the operation must be flag_for_review, not {}",
                op.as_str()
            ),
        ));
    }
    let described: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
    if engine_passed && !findings.is_empty() {
        found.hold.push(format!(
            "the engine says the ID number is valid but govsync's check disagrees: {}",
            described.join("; ")
        ));
    } else if !engine_passed && !described.is_empty() {
        found.flag.push(format!(
            "govsync's check of the ID number: {}",
            described.join("; ")
        ));
    } else if !engine_passed {
        found
            .hold
            .push("the engine says the ID number is invalid but it passes govsync's check".into());
    }
    if findings.contains(&IdFinding::Legacy15) && found.hold.is_empty() && found.flag.is_empty() {
        found
            .hold
            .push("15-digit legacy number: not applied".into());
    }
    if let Some(corr) = &g.suggested_correction {
        let corr_findings = check(
            corr,
            county,
            governed_at.date_naive(),
            rules.id_card_max_age,
        );
        let note = if corr_findings.is_empty() {
            "passes govsync's check".to_string()
        } else {
            let f: Vec<String> = corr_findings.iter().map(|f| f.to_string()).collect();
            format!("fails govsync's check: {}", f.join("; "))
        };
        let reason = format!("suggested correction (never applied automatically) {note}");
        if op == OperationType::FlagForReview || !found.flag.is_empty() {
            found.flag.push(reason);
        } else {
            found.hold.push(reason);
        }
    }
    found
        .seen_values
        .push((Column::IdCard, Value::Text(id.clone())));
    found.data_value = Some((Column::IdCard, Value::Text(id)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_seed_examples_fail_the_standard() {
        // DESIGN.md: the check digit of 32010219900101123 is 2.
        assert_eq!(check_char("32010219900101123"), Some('2'));
        let at = day("2024-01-15");
        assert_eq!(
            check("32010219900101123X", Some("320102"), at, 120),
            vec![IdFinding::CheckDigit {
                expected: '2',
                found: 'X'
            }]
        );
        assert_eq!(
            check("320102199001011231", Some("320102"), at, 120),
            vec![IdFinding::CheckDigit {
                expected: '2',
                found: '1'
            }]
        );
        assert!(check("320102199001011232", Some("320102"), at, 120).is_empty());
    }

    #[test]
    fn known_valid_number() {
        // The example from GB 11643-1999 itself.
        assert_eq!(check_char("11010519491231002"), Some('X'));
        assert!(check("11010519491231002x", None, day("2024-01-01"), 120).is_empty());
    }

    #[test]
    fn dates_and_regions() {
        let at = day("2024-01-15");
        let mk = |first17: &str| format!("{first17}{}", check_char(first17).unwrap());
        assert!(matches!(
            check(&mk("32010219900230123"), None, at, 120)[..],
            [IdFinding::BirthDate(_)]
        ));
        assert!(matches!(
            check(&mk("32010220300101123"), None, at, 120)[..],
            [IdFinding::BirthDate(_)]
        ));
        assert!(matches!(
            check(&mk("32010218900101123"), None, at, 120)[..],
            [IdFinding::BirthDate(_)]
        ));
        assert!(
            check(&mk("32010219040116123"), None, at, 120).is_empty(),
            "exactly 120 is fine"
        );
        assert!(matches!(
            check(&mk("99010219900101123"), None, at, 120)[..],
            [IdFinding::UnknownProvince(_)]
        ));
        assert!(matches!(
            check(&mk("11010219900101123"), Some("320102"), at, 120)[..],
            [IdFinding::RegionMismatch { .. }]
        ));
        assert_eq!(
            check("320102900101123", None, at, 120),
            vec![IdFinding::Legacy15]
        );
        assert!(matches!(
            check("1234", None, at, 120)[..],
            [IdFinding::Format(_)]
        ));
    }
}
