//! The schema files of `schemas/` and the seed's sample events beside
//! them, loaded for the tests, and the two verdicts on bytes that the
//! agreement tests compare: the event schema's and the decoder's.

use std::path::PathBuf;

use govsync::event;
use jsonschema::{Draft, Validator};
use serde_json::Value;

/// Large enough that the size limit (a transport concern the schema does
/// not describe) never decides a verdict here.
pub const NO_LIMIT: usize = 64 << 20;

pub const EVENT_SCHEMA: &str = "governance-event.v1.schema.json";
pub const REVIEW_SCHEMA: &str = "review-message.v1.schema.json";
pub const DLQ_SCHEMA: &str = "dead-letter-headers.v1.schema.json";
pub const DECISION_SCHEMA: &str = "review-decision.v1.schema.json";

pub fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

pub fn load(rel: &str) -> Value {
    let path = schemas_dir().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A draft 2020-12 validator for one of the schema files.
pub fn validator(name: &str) -> Validator {
    validator_for(&load(name))
}

/// A draft 2020-12 validator; the event schema is registered under its
/// `$id` so that the others can refer to it.
pub fn validator_for(schema: &Value) -> Validator {
    let name = schema["$id"].as_str().unwrap_or("a schema without $id");
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{name}"
    );
    let event_schema = load(EVENT_SCHEMA);
    let event_id = event_schema["$id"]
        .as_str()
        .expect("the event schema has an $id");
    let options = jsonschema::options().with_draft(Draft::Draft202012);
    let build = |options: jsonschema::ValidationOptions| {
        options
            .build(schema)
            .unwrap_or_else(|e| panic!("{name} is not a valid draft 2020-12 schema: {e}"))
    };
    if name == event_id {
        // Not registered: the registered copy would shadow an edited one.
        return build(options);
    }
    let registry = jsonschema::Registry::new()
        .add(event_id, event_schema.clone())
        .expect("the $id is a URI")
        .prepare()
        .expect("the registry resolves");
    build(options.with_registry(&registry))
}

pub fn seed_files() -> Vec<(String, Vec<u8>)> {
    let dir = schemas_dir().join("examples");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("schemas/examples exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.len() > 3 && name.as_bytes()[..2].iter().all(u8::is_ascii_digit)
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("readable"))
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 6, "the seed's six sample records: {out:?}");
    out
}

pub fn seed(n: usize) -> Vec<u8> {
    seed_files().swap_remove(n - 1).1
}

/// The schema's verdict on bytes: the schema judges JSON values, so bytes
/// that are not one UTF-8 JSON text are rejected before it is consulted.
pub fn schema_verdict(v: &Validator, bytes: &[u8]) -> Result<(), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match v.iter_errors(&value).next() {
        None => Ok(()),
        Some(e) => Err(format!("{} at {}", e, e.instance_path())),
    }
}

pub fn decoder_verdict(bytes: &[u8]) -> Result<(), String> {
    event::decode(bytes, NO_LIMIT)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", e.class()))
}
