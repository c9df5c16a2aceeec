//! The review-message and dead-letter-headers schemas describe what
//! `govsync::output` builds, and the example files; every schema property
//! is described.

use govsync::event::{self, Column, Disposition, Row, RuleSet};
use govsync::message::RawMessage;
use govsync::output::{self, Failure, ReviewReason};
use serde_json::{Value, json};

use crate::schemas::{DLQ_SCHEMA, EVENT_SCHEMA, NO_LIMIT, REVIEW_SCHEMA, load, seed, validator};

fn raw_message(value: Vec<u8>, offset: i64) -> RawMessage {
    RawMessage {
        topic: "governance.results".into(),
        partition: 2,
        offset,
        key: Some(b"3201".to_vec()),
        value: Some(value),
        headers: vec![
            (
                "traceparent".into(),
                b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_vec(),
            ),
            ("binary".into(), vec![0xff, 0x00, 0x01]),
        ],
        timestamp_ms: Some(1_705_285_200_000),
    }
}

/// Kafka headers as the JSON object the dead-letter schema describes.
fn headers_json(h: &[(String, Vec<u8>)]) -> Value {
    Value::Object(
        h.iter()
            .map(|(k, v)| (k.clone(), json!(String::from_utf8_lossy(v))))
            .collect(),
    )
}

fn review_messages() -> Vec<(String, Value)> {
    let rules = RuleSet::default();
    let mut out = Vec::new();
    for (n, reason, written) in [
        (3, ReviewReason::CheckContradiction, false),
        (4, ReviewReason::Flagged, true),
        (6, ReviewReason::Conflict, false),
    ] {
        let bytes = seed(n);
        let c =
            event::decode_and_check(&bytes, NO_LIMIT, &rules).expect("seed records pass the rules");
        let details = match &c.disposition {
            Disposition::Flag(r) | Disposition::Hold(r) => r.clone(),
            Disposition::Apply => vec!["the row changed after the engine read it".into()],
        };
        let mut row = Row {
            address: Some("江苏省南京市玄武区中山路123号A座".into()),
            quality_score: Some(0.65),
            review_flag: Some(false),
            version: 3,
            ..Default::default()
        };
        row.last_update = Some(chrono::Utc::now());
        let current = (reason == ReviewReason::Conflict).then_some(&row);
        let m = output::review(
            &raw_message(bytes, 40 + n as i64),
            &c,
            reason,
            &details,
            written,
            current,
            "govsync-3201:governance.results:2:40-46",
            "governance.review",
        );
        assert_eq!(m.topic, "governance.review");
        let doc: Value = serde_json::from_slice(m.payload.as_deref().unwrap()).unwrap();
        out.push((format!("review of seed {n}"), doc));
    }
    // Every column in `proposed` and `current`.
    let mut e: Value = serde_json::from_slice(&seed(1)).unwrap();
    e["sync_operation"]["target_fields"] = json!([
        "address",
        "geo_lat",
        "geo_lon",
        "geo_accuracy",
        "quality_score",
        "validation_status",
        "last_governance_time"
    ]);
    let bytes = serde_json::to_vec(&e).unwrap();
    let c = event::decode_and_check(&bytes, NO_LIMIT, &rules).unwrap();
    let mut row = Row::default();
    for (col, v) in &c.writes {
        row.set(*col, v);
    }
    row.set(Column::ReviewFlag, &govsync::event::Value::Bool(true));
    let m = output::review(
        &raw_message(bytes, 50),
        &c,
        ReviewReason::Conflict,
        &[],
        false,
        Some(&row),
        "b",
        "governance.review",
    );
    out.push((
        "conflict on every address column".into(),
        serde_json::from_slice(m.payload.as_deref().unwrap()).unwrap(),
    ));
    out
}

#[test]
fn review_messages_match_their_schema() {
    let v = validator(REVIEW_SCHEMA);
    let mut docs = review_messages();
    docs.push((
        "examples/review-message.json".into(),
        load("examples/review-message.json"),
    ));
    for (name, doc) in &docs {
        let errors: Vec<String> = v
            .iter_errors(doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}\n{doc:#}");
    }
    // The schema is not vacuous: a message missing a key, or with a key the
    // schema does not know, fails.
    let good = &docs[0].1;
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("reason");
    assert!(!v.is_valid(&missing));
    let mut extra = good.clone();
    extra["unknown"] = json!(1);
    assert!(!v.is_valid(&extra));
    let mut bad_event = good.clone();
    bad_event["event"]["schema_version"] = json!(2);
    assert!(!v.is_valid(&bad_event), "the embedded event is checked");
}

fn dead_letters() -> Vec<(String, Value)> {
    let rules = RuleSet::default();
    let mut out = Vec::new();
    let now = chrono::Utc::now();
    // Not JSON: no data type or region known.
    let raw = raw_message(b"{not json".to_vec(), 7);
    let err = event::decode_and_check(raw.value.as_deref().unwrap(), NO_LIMIT, &rules).unwrap_err();
    let f = Failure {
        class: err.rejection.class().into(),
        message: err.rejection.to_string(),
        batch_id: "g:governance.results:2:0-9".into(),
        attempts: 1,
        ..Default::default()
    };
    out.push((
        "malformed",
        output::dead_letter(&raw, &f, "governance.results.dlq"),
    ));
    // A rule failure: data type and region known.
    let mut e: Value = serde_json::from_slice(&seed(5)).unwrap();
    e["sync_operation"]["target_fields"] = json!(["address"]);
    let raw = raw_message(serde_json::to_vec(&e).unwrap(), 8);
    let err = event::decode_and_check(raw.value.as_deref().unwrap(), NO_LIMIT, &rules).unwrap_err();
    assert_eq!(err.rejection.class(), "rule");
    let f = Failure {
        class: err.rejection.class().into(),
        message: err.rejection.to_string(),
        batch_id: "g:governance.results:2:0-9".into(),
        attempts: 1,
        first_failed_at: Some(now),
        data_type: err.data_type.map(|d| d.as_str().into()),
        region: err.region.clone(),
        ..Default::default()
    };
    out.push((
        "rule",
        output::dead_letter(&raw, &f, "governance.results.dlq"),
    ));
    // Rejected by the database, after a replay.
    let mut raw = raw_message(seed(1), 9);
    raw.headers
        .push((output::headers::REPLAY_COUNT.into(), b"2".to_vec()));
    let f = Failure {
        class: "db_rejected".into(),
        message: "record rejected by the database (22001): value too long".into(),
        batch_id: "g:governance.results:2:0-9".into(),
        attempts: 3,
        first_failed_at: Some(now),
        db_code: Some("22001".into()),
        db_constraint: Some("customer_profile_address_check".into()),
        data_type: Some("address".into()),
        region: Some("3201".into()),
    };
    out.push((
        "db_rejected",
        output::dead_letter(&raw, &f, "governance.results.dlq"),
    ));
    out.into_iter()
        .map(|(n, m)| {
            assert_eq!(m.topic, "governance.results.dlq");
            (n.to_string(), headers_json(&m.headers))
        })
        .collect()
}

#[test]
fn dead_letter_headers_match_their_schema() {
    let v = validator(DLQ_SCHEMA);
    let mut docs = dead_letters();
    docs.push((
        "examples/dead-letter-headers.json".into(),
        load("examples/dead-letter-headers.json"),
    ));
    for (name, doc) in &docs {
        let errors: Vec<String> = v
            .iter_errors(doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}\n{doc:#}");
    }
    // Every header govsync can add is documented, and only those.
    let schema = load(DLQ_SCHEMA);
    let documented: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut all = output::headers::ALL.to_vec();
    all.sort();
    let mut documented_sorted = documented.clone();
    documented_sorted.sort();
    assert_eq!(documented_sorted, all);
    for (k, p) in schema["properties"].as_object().unwrap() {
        assert!(
            p["description"].as_str().is_some_and(|d| d.len() > 10),
            "{k} is described"
        );
    }
    // The always-present headers are required.
    let good = &docs[0].1;
    for k in [
        output::headers::ERROR_CLASS,
        output::headers::SOURCE_OFFSET,
        output::headers::REPLAY_COUNT,
    ] {
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove(k);
        assert!(!v.is_valid(&missing), "{k} is required");
    }
    let mut bad = good.clone();
    bad[output::headers::SOURCE_PARTITION] = json!("-1");
    assert!(!v.is_valid(&bad));
}

/// Every property of every schema has a description (the schemas are the
/// user documentation of the contract).
#[test]
fn schemas_describe_every_property() {
    fn walk(v: &Value, at: &str, missing: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Object(props)) = m.get("properties") {
                    for (k, p) in props {
                        let inline = p.get("description").is_some();
                        let by_ref = p.get("$ref").is_some();
                        if !inline && !by_ref {
                            missing.push(format!("{at}.{k}"));
                        }
                    }
                }
                for (k, x) in m {
                    // The conditional requirements restate properties
                    // described elsewhere.
                    if k != "if" && k != "then" {
                        walk(x, &format!("{at}/{k}"), missing);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, at, missing)),
            _ => {}
        }
    }
    for name in [EVENT_SCHEMA, REVIEW_SCHEMA, DLQ_SCHEMA] {
        let s = load(name);
        assert!(
            s["$id"].as_str().is_some_and(|id| id.ends_with(name)),
            "{name} $id"
        );
        assert!(s["title"].is_string(), "{name} title");
        let mut missing = Vec::new();
        walk(&s, name, &mut missing);
        assert!(
            missing.is_empty(),
            "properties without a description: {missing:?}"
        );
    }
}
