//! The event schema and `govsync::event::decode` accept and reject the
//! same documents (seed samples, generated events, mutations of both), and
//! that comparison is sharp enough to notice a schema that drifted.

use std::time::Instant;

use govsync::event;
use serde_json::{Value, json};

use crate::corpus::{mutated_events, trunc, valid_events};
use crate::schemas::{
    EVENT_SCHEMA, NO_LIMIT, decoder_verdict, load, schema_verdict, schemas_dir, seed, seed_files,
    validator, validator_for,
};

#[test]
fn schema_agreement() {
    let started = Instant::now();
    let v = validator(EVENT_SCHEMA);
    let valid = valid_events();
    let mutated = mutated_events(&valid, 700, 0x5eed_0003);

    let mut disagreements = Vec::new();
    let mut rejected_valid = Vec::new();
    let mut rejected = 0;
    for (name, bytes) in &valid {
        let (s, d) = (schema_verdict(&v, bytes), decoder_verdict(bytes));
        if s.is_err() || d.is_err() {
            rejected_valid.push(format!("{name}\n    schema: {s:?}\n    decoder: {d:?}"));
        }
    }
    for (name, bytes) in &mutated {
        let (s, d) = (schema_verdict(&v, bytes), decoder_verdict(bytes));
        if s.is_ok() != d.is_ok() {
            let text = String::from_utf8_lossy(bytes);
            disagreements.push(format!(
                "{name}\n    schema: {s:?}\n    decoder: {d:?}\n    event: {}",
                trunc(&text).replace('\n', " ")
            ));
        }
        if d.is_err() {
            rejected += 1;
        }
    }
    println!(
        "schema_agreement: {} valid, {} mutated ({} rejected) in {:?}",
        valid.len(),
        mutated.len(),
        rejected,
        started.elapsed()
    );
    assert!(
        rejected_valid.is_empty(),
        "valid events rejected:\n{}",
        rejected_valid.join("\n")
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} mutated events get different verdicts:\n{}",
        disagreements.len(),
        mutated.len(),
        disagreements.join("\n")
    );
    assert!(valid.len() >= 300, "a few hundred valid events");
    assert!(
        rejected * 10 >= mutated.len() * 6,
        "most mutations must be rejected, or the test proves little: {rejected} of {}",
        mutated.len()
    );
    assert!(
        mutated.len() - rejected >= 30,
        "some mutations must stay valid (extra keys, other spellings), or the schema may be too strict unnoticed"
    );
}

/// The agreement test is sharp enough to notice a schema that is slightly
/// off: each of these small edits of the event schema makes at least one
/// event of the corpus get a different verdict from the decoder.
#[test]
fn schema_agreement_notices_drift() {
    let started = Instant::now();
    let valid = valid_events();
    let mutated = mutated_events(&valid, 700, 0x5eed_0003);
    let corpus: Vec<(&[u8], bool)> = valid
        .iter()
        .chain(&mutated)
        .map(|(_, b)| (b.as_slice(), decoder_verdict(b).is_ok()))
        .collect();
    type Edit = fn(&mut Value);
    let edits: Vec<(&str, Edit)> = vec![
        ("address maxLength 499", |s| {
            s["$defs"]["original_data"]["properties"]["address"]["maxLength"] = json!(499)
        }),
        ("standardized_address minLength 0", |s| {
            s["$defs"]["governance_result"]["properties"]["standardized_address"]["minLength"] =
                json!(0)
        }),
        ("target_fields without uniqueItems", |s| {
            s["$defs"]["sync_operation"]["properties"]["target_fields"]
                .as_object_mut()
                .unwrap()
                .remove("uniqueItems");
        }),
        ("target_fields maxItems 17", |s| {
            s["$defs"]["sync_operation"]["properties"]["target_fields"]["maxItems"] = json!(17)
        }),
        ("sync_operation open", |s| {
            s["$defs"]["sync_operation"]
                .as_object_mut()
                .unwrap()
                .remove("additionalProperties");
        }),
        ("envelope open", |s| {
            s.as_object_mut().unwrap().remove("additionalProperties");
        }),
        ("no id_card requirements", |s| {
            s["allOf"].as_array_mut().unwrap().remove(1);
        }),
        ("governed_at offset optional", |s| {
            let p = s["properties"]["governed_at"]["pattern"].as_str().unwrap();
            s["properties"]["governed_at"]["pattern"] = json!(p.replace(")$", ")?$"));
            s["properties"]["governed_at"]["minLength"] = json!(19);
        }),
        ("age a number", |s| {
            s["$defs"]["birth_date_analysis"]["properties"]["age"]["type"] = json!("number")
        }),
        ("priority without low", |s| {
            s["properties"]["priority"]["enum"] = json!(["high", "standard"])
        }),
        ("carrier_info maxProperties 21", |s| {
            s["$defs"]["carrier_info"]["maxProperties"] = json!(21)
        }),
        ("name may hold control characters", |s| {
            s["$defs"]["original_data"]["properties"]["name"]
                .as_object_mut()
                .unwrap()
                .remove("pattern");
        }),
        ("quality_score up to 1.5", |s| {
            s["$defs"]["original_data"]["properties"]["quality_score"]["maximum"] = json!(1.5)
        }),
        ("schema_version any number", |s| {
            s["properties"]["schema_version"] = json!({"type": "number"})
        }),
        ("geocoding_result any type", |s| {
            s["$defs"]["geocoding_result"]
                .as_object_mut()
                .unwrap()
                .remove("type");
        }),
    ];
    let mut unnoticed = Vec::new();
    for (name, edit) in &edits {
        let mut schema = load(EVENT_SCHEMA);
        edit(&mut schema);
        let v = validator_for(&schema);
        let noticed = corpus
            .iter()
            .filter(|(bytes, decoded)| schema_verdict(&v, bytes).is_ok() != *decoded)
            .count();
        if noticed == 0 {
            unnoticed.push(*name);
        }
    }
    println!(
        "schema_agreement_notices_drift: {} edits over {} events in {:?}",
        edits.len(),
        corpus.len(),
        started.elapsed()
    );
    assert!(
        unnoticed.is_empty(),
        "edits the agreement test would miss: {unnoticed:?}"
    );
}

/// The JSON files beside the schema: the seed-events.jsonl lines are the
/// six sample files, and every example is accepted by both.
#[test]
fn seed_jsonl_matches_the_sample_files() {
    let jsonl = std::fs::read_to_string(schemas_dir().join("examples/seed-events.jsonl")).unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let files: Vec<Value> = seed_files()
        .iter()
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(lines, files);
}

/// Inputs that are JSON texts but not I-JSON (RFC 7493) are outside what a
/// schema can judge (a validator sees the parsed value). This pins down
/// what the decoder does with them, as the schema's description says.
#[test]
fn non_i_json_inputs() {
    let text = String::from_utf8(seed(1)).unwrap();
    let with = |extra: &str, at: &str| text.replacen(at, &format!("{at} {extra}"), 1);
    // A known key twice: rejected.
    let dup_known = with(r#""event_id": "again","#, "\"schema_version\": 1,");
    assert_eq!(
        event::decode(dup_known.as_bytes(), NO_LIMIT)
            .unwrap_err()
            .class(),
        "schema"
    );
    // Content govsync never reads (unknown keys of open objects) is skipped
    // without being interpreted: duplicates, unpaired surrogates and
    // numbers beyond f64 there do not reject the event.
    for extra in [r#""x": 1, "x": 2"#, r#""x": "\ud800""#, r#""x": 1e400"#] {
        let e = text.replacen(
            "\"original_data\": {",
            &format!("\"original_data\": {{{extra}, "),
            1,
        );
        assert!(event::decode(e.as_bytes(), NO_LIMIT).is_ok(), "{extra}");
    }
    // In a typed property they do.
    let e = text.replacen("\"quality_score\": 0.65", "\"quality_score\": 1e400", 1);
    assert!(event::decode(e.as_bytes(), NO_LIMIT).is_err());
    let e = text.replacen("\"manual_input\"", "\"\\udc00\"", 1);
    assert!(event::decode(e.as_bytes(), NO_LIMIT).is_err());
}
