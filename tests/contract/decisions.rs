//! The review-decision schema (issue 15): the example is valid, and the
//! mistakes a client can make are refused by the schema itself.

use serde_json::{Value, json};

use crate::schemas::{DECISION_SCHEMA, load, validator};

fn example() -> Value {
    load("examples/review-decision.json")
}

#[test]
fn the_decision_example_is_valid_and_mistakes_are_refused() {
    let v = validator(DECISION_SCHEMA);
    let ok = example();
    assert!(
        v.is_valid(&ok),
        "{:?}",
        v.iter_errors(&ok)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    let mut approve = ok.clone();
    approve["decision"] = json!("approve");
    approve.as_object_mut().unwrap().remove("corrected");
    assert!(v.is_valid(&approve), "approve needs no values");

    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut d = ok.clone();
        f(&mut d);
        d
    };
    let refused = [
        (
            "correct without values",
            mutate(&|d| {
                d.as_object_mut().unwrap().remove("corrected");
            }),
        ),
        (
            "approve with values",
            mutate(&|d| d["decision"] = json!("approve")),
        ),
        (
            "a field govsync does not write",
            mutate(&|d| d["corrected"]["name"] = json!("王五")),
        ),
        (
            "no reviewer",
            mutate(&|d| {
                d.as_object_mut().unwrap().remove("reviewer");
            }),
        ),
        (
            "an unknown decision",
            mutate(&|d| d["decision"] = json!("maybe")),
        ),
        ("an unknown key", mutate(&|d| d["approved_by"] = json!("x"))),
        ("empty values", mutate(&|d| d["corrected"] = json!({}))),
        ("version 2", mutate(&|d| d["schema_version"] = json!(2))),
    ];
    for (what, doc) in refused {
        assert!(!v.is_valid(&doc), "{what} is refused: {doc}");
    }
}
