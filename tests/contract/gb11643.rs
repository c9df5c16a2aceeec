//! The ID-card check (GB 11643) agrees with an independent ISO 7064
//! MOD 11-2, on the seed's numbers and on a hundred thousand generated
//! ones with every single-character corruption.

use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use govsync::event::idcard::{self, IdFinding};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// GB/T 2260 province-level codes, listed here independently of the crate.
const PROVINCE_CODES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
    "81", "82",
];

/// Real county-level division codes (GB/T 2260), one or two per province.
const COUNTIES: &[&str] = &[
    "110101", "110105", "120101", "130102", "140105", "150102", "210102", "220102", "230102",
    "310101", "310115", "320102", "320106", "320505", "330102", "330106", "340102", "350102",
    "360102", "370102", "410102", "420102", "430102", "440103", "440305", "450102", "460105",
    "500103", "510104", "520102", "530102", "540102", "610102", "620102", "630102", "640104",
    "650102",
];

/// ISO 7064 MOD 11-2 from its definition: positions are numbered from the
/// right, the check character at position 1; the weight of position i is
/// 2^(i-1) mod 11; the check value a1 makes the weighted sum ≡ 1 (mod 11);
/// the value 10 is written X.
fn iso7064_mod11_2(first17: &[u8]) -> char {
    assert_eq!(first17.len(), 17);
    let weight = |i: u32| (0..i - 1).fold(1u32, |w, _| w * 2 % 11);
    let sum: u32 = first17
        .iter()
        .enumerate()
        .map(|(j, d)| {
            let i = 18 - j as u32; // the leftmost digit is position 18
            u32::from(d - b'0') * weight(i)
        })
        .sum();
    let a1 = (0..=10u32)
        .find(|a1| (sum + a1 * weight(1)) % 11 == 1)
        .expect("11 is prime");
    if a1 == 10 {
        'X'
    } else {
        char::from(b'0' + a1 as u8)
    }
}

/// What `idcard::check` must find for an 18-character number of 17 digits
/// and a digit or X, worked out independently. BirthDate messages are not
/// compared, only that the finding is there.
fn expected_findings(id: &[u8], county: &str, at: NaiveDate, max_age: i32) -> Vec<IdFinding> {
    let mut out = Vec::new();
    let expected = iso7064_mod11_2(&id[..17]);
    let found = id[17] as char;
    if expected != found {
        out.push(IdFinding::CheckDigit { expected, found });
    }
    let text = std::str::from_utf8(id).unwrap();
    if !PROVINCE_CODES.contains(&&text[..2]) {
        out.push(IdFinding::UnknownProvince(text[..2].to_string()));
    }
    if &text[..6] != county {
        out.push(IdFinding::RegionMismatch {
            id_region: text[..6].to_string(),
            county: county.to_string(),
        });
    }
    let num = |r: std::ops::Range<usize>| text[r].parse::<u32>().unwrap();
    match NaiveDate::from_ymd_opt(num(6..10) as i32, num(10..12), num(12..14)) {
        None => out.push(IdFinding::BirthDate(String::new())),
        Some(born) => {
            let had_birthday = (at.month(), at.day()) >= (born.month(), born.day());
            let age = at.year() - born.year() - i32::from(!had_birthday);
            if born > at || age > max_age {
                out.push(IdFinding::BirthDate(String::new()));
            }
        }
    }
    out
}

fn blank_birth_dates(f: Vec<IdFinding>) -> Vec<IdFinding> {
    f.into_iter()
        .map(|f| match f {
            IdFinding::BirthDate(_) => IdFinding::BirthDate(String::new()),
            other => other,
        })
        .collect()
}

/// Single-character corruptions of `id`: every one of the 163 for the
/// first numbers (`exhaustive`), then one per number, cycling through the
/// 18 positions with the number's index `k`.
fn corruptions(id: &str, exhaustive: bool, k: usize, rng: &mut StdRng) -> Vec<(usize, u8)> {
    let mut corruptions: Vec<(usize, u8)> = Vec::new();
    if exhaustive {
        for pos in 0..18 {
            for c in b"0123456789X" {
                if (pos < 17 && *c == b'X') || *c == id.as_bytes()[pos] {
                    continue;
                }
                corruptions.push((pos, *c));
            }
        }
    } else {
        let pos = k % 18;
        let choices: &[u8] = if pos < 17 {
            b"0123456789"
        } else {
            b"0123456789X"
        };
        let c = loop {
            let c = choices[rng.random_range(0..choices.len())];
            if c != id.as_bytes()[pos] {
                break c;
            }
        };
        corruptions.push((pos, c));
    }
    corruptions
}

#[test]
fn id_card_check_digit_agrees_with_iso_7064() {
    let started = Instant::now();
    let at = NaiveDate::from_ymd_opt(2024, 1, 15).unwrap();
    let first_day = NaiveDate::from_ymd_opt(1904, 1, 1).unwrap();
    let span = (at - first_day).num_days();
    let mut rng = StdRng::seed_from_u64(11643);

    // The seed's numbers (DESIGN.md section 4).
    assert_eq!(iso7064_mod11_2(b"32010219900101123"), '2');
    assert_eq!(
        iso7064_mod11_2(b"11010519491231002"),
        'X',
        "GB 11643's own example"
    );
    for (id, found) in [
        ("32010219900101123X", 'X'),
        ("320102199001011231", '1'),
        ("320102199001011234", '4'),
    ] {
        assert_eq!(
            idcard::check(id, Some("320102"), at, 120),
            vec![IdFinding::CheckDigit {
                expected: '2',
                found
            }],
            "{id}"
        );
    }
    assert!(idcard::check("320102199001011232", Some("320102"), at, 120).is_empty());

    const N: usize = 100_000;
    const EXHAUSTIVE: usize = 1_000;
    let mut corrupted = 0usize;
    let mut positions = [0usize; 18];
    let mut x_checks = 0;
    for k in 0..N {
        let county = COUNTIES[rng.random_range(0..COUNTIES.len())];
        let born = first_day + chrono::Duration::days(rng.random_range(0..=span));
        let first17 = format!(
            "{county}{}{:03}",
            born.format("%Y%m%d"),
            rng.random_range(0..1000)
        );
        let check = iso7064_mod11_2(first17.as_bytes());
        if check == 'X' {
            x_checks += 1;
        }
        let id = format!("{first17}{check}");
        assert_eq!(
            idcard::check(&id, Some(county), at, 120),
            vec![],
            "a valid number is accepted: {id}"
        );
        assert_eq!(idcard::check_char(&first17), Some(check));
        if check == 'X' {
            assert_eq!(
                idcard::check(&id.to_lowercase(), Some(county), at, 120),
                vec![]
            );
        }

        for (pos, c) in corruptions(&id, k < EXHAUSTIVE, k, &mut rng) {
            let mut bad = id.clone().into_bytes();
            bad[pos] = c;
            let expected = expected_findings(&bad, county, at, 120);
            let bad = String::from_utf8(bad).unwrap();
            let got = blank_birth_dates(idcard::check(&bad, Some(county), at, 120));
            assert!(
                matches!(expected.first(), Some(IdFinding::CheckDigit { .. })),
                "MOD 11-2 detects every single substitution: {id} → {bad}"
            );
            assert_eq!(got, expected, "{id} → {bad}");
            positions[pos] += 1;
            corrupted += 1;
        }
    }
    assert!(
        positions.iter().all(|&n| n >= 5_000),
        "every position is corrupted: {positions:?}"
    );
    assert!(
        x_checks > N / 20,
        "X check characters are covered: {x_checks}"
    );
    println!(
        "id_card_check_digit_agrees_with_iso_7064: {N} valid numbers, {corrupted} corruptions (per position {positions:?}) in {:?}",
        started.elapsed()
    );
}
