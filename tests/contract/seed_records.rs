//! The seed records get the verdicts DESIGN.md section 4 asks for, and the
//! generated events pass the business rules.

use std::collections::BTreeMap;

use govsync::event::{self, Column, Disposition, RuleSet};

use crate::corpus::generated_events;
use crate::schemas::{NO_LIMIT, seed};

#[test]
fn seed_records_verdicts() {
    let rules = RuleSet::default();
    let verdict = |n: usize| {
        event::decode_and_check(&seed(n), NO_LIMIT, &rules)
            .unwrap_or_else(|e| panic!("seed {n} is rejected: {}", e.rejection))
    };
    for n in [1, 2, 5, 6] {
        let c = verdict(n);
        assert_eq!(c.disposition, Disposition::Apply, "seed {n}");
        assert!(!c.writes.is_empty(), "seed {n} writes its target fields");
    }

    // 03: the engine says the number passes; by GB 11643 the check digit of
    // 32010219900101123 is 2, not X. Held: nothing written, sent to review.
    let c = verdict(3);
    let Disposition::Hold(reasons) = &c.disposition else {
        panic!("seed 03 must go to review, not {:?}", c.disposition)
    };
    assert!(c.writes.is_empty(), "a held record writes nothing");
    let all = reasons.join("\n");
    assert!(all.contains("expected 2, found X"), "{all}");

    // 04: the engine flags it (check digit 4) and suggests ...1, which fails
    // too: flagged (metadata columns only), with both findings.
    let c = verdict(4);
    let Disposition::Flag(reasons) = &c.disposition else {
        panic!(
            "seed 04 must be flagged for review, not {:?}",
            c.disposition
        )
    };
    assert!(
        c.writes.iter().all(|(col, _)| col.is_metadata()),
        "{:?}",
        c.writes
    );
    assert!(!c.writes.iter().any(|(col, _)| *col == Column::IdCard));
    let all = reasons.join("\n");
    assert!(all.contains("expected 2, found 4"), "{all}");
    let correction = reasons
        .iter()
        .find(|r| r.contains("suggested correction"))
        .unwrap_or_else(|| panic!("a reason about the suggested correction: {all}"));
    assert!(correction.contains("expected 2, found 1"), "{correction}");
}

/// The generated events of the agreement test also pass the business rules:
/// all are applied except the bad check digits, which are flagged. (The
/// hand-made edge cases only need to decode; some break rules on purpose.)
#[test]
fn generated_events_pass_the_rules() {
    let rules = RuleSet::default();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (name, e) in generated_events(270) {
        let bytes = serde_json::to_vec(&e).unwrap();
        let c = event::decode_and_check(&bytes, NO_LIMIT, &rules)
            .unwrap_or_else(|r| panic!("{name}: {}", r.rejection));
        let k = match c.disposition {
            Disposition::Apply => "apply",
            Disposition::Flag(_) => "flag",
            Disposition::Hold(_) => "hold",
        };
        *counts.entry(format!("{} {k}", c.data_type)).or_default() += 1;
    }
    assert_eq!(counts.get("id_card flag"), Some(&27), "{counts:?}");
    assert!(counts.keys().all(|k| !k.ends_with("hold")), "{counts:?}");
}
