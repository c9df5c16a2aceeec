//! The published contract (`schemas/`) against the code that implements it.
//!
//! - The event schema and `govsync::event::decode` accept and reject the
//!   same documents (seed samples, generated events, mutations of both).
//! - The review-message and dead-letter-headers schemas describe what
//!   `govsync::output` builds, and the example files.
//! - `decode` and `decode_and_check` never panic on arbitrary input.
//! - The ID-card check agrees with an independent ISO 7064 MOD 11-2.
//! - The seed records get the verdicts DESIGN.md section 4 asks for.
//!
//! None of these needs Kafka or PostgreSQL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use govsync::demo::generate;
use govsync::event::idcard::{self, IdFinding};
use govsync::event::{self, Column, DataType, Disposition, Row, RuleSet};
use govsync::message::RawMessage;
use govsync::output::{self, Failure, ReviewReason};
use jsonschema::{Draft, Validator};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// Large enough that the size limit (a transport concern the schema does
/// not describe) never decides a verdict here.
const NO_LIMIT: usize = 64 << 20;

const EVENT_SCHEMA: &str = "governance-event.v1.schema.json";
const REVIEW_SCHEMA: &str = "review-message.v1.schema.json";
const DLQ_SCHEMA: &str = "dead-letter-headers.v1.schema.json";

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn load(rel: &str) -> Value {
    let path = schemas_dir().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A draft 2020-12 validator for one of the schema files.
fn validator(name: &str) -> Validator {
    validator_for(&load(name))
}

/// A draft 2020-12 validator; the event schema is registered under its
/// `$id` so that the others can refer to it.
fn validator_for(schema: &Value) -> Validator {
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

fn seed_files() -> Vec<(String, Vec<u8>)> {
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

fn seed(n: usize) -> Vec<u8> {
    seed_files().swap_remove(n - 1).1
}

/// The schema's verdict on bytes: the schema judges JSON values, so bytes
/// that are not one UTF-8 JSON text are rejected before it is consulted.
fn schema_verdict(v: &Validator, bytes: &[u8]) -> Result<(), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match v.iter_errors(&value).next() {
        None => Ok(()),
        Some(e) => Err(format!("{} at {}", e, e.instance_path())),
    }
}

fn decoder_verdict(bytes: &[u8]) -> Result<(), String> {
    event::decode(bytes, NO_LIMIT)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", e.class()))
}

// --- valid events -------------------------------------------------------

/// Generated events: every data type, both priorities, and the engine's
/// correctly flagged bad check digits.
fn generated_events(n: usize) -> Vec<(String, Value)> {
    let customers = generate::customers(n, 4, 20240115);
    let mut out = Vec::new();
    for (i, c) in customers.iter().enumerate() {
        let dt = DataType::ALL[i % 3];
        let high = (i / 3) % 2 == 0;
        let at = generate::governed_at(i);
        let e = generate::event(c, dt, &format!("gen-{i:05}"), at, high);
        out.push((format!("generated {dt} #{i} high={high}"), e));
        if i % 10 == 0 {
            let e = generate::bad_check_digit_event(c, &format!("bad-{i:05}"), at);
            out.push((format!("generated bad check digit #{i}"), e));
        }
    }
    out
}

fn base_address() -> Value {
    serde_json::from_slice(&seed(1)).unwrap()
}
fn base_id_card() -> Value {
    serde_json::from_slice(&seed(4)).unwrap()
}
fn base_phone() -> Value {
    serde_json::from_slice(&seed(5)).unwrap()
}

/// Sets `path` (dot-separated keys) in `v`, creating objects on the way.
fn set(mut v: Value, path: &str, x: Value) -> Value {
    let mut cur = &mut v;
    let keys: Vec<&str> = path.split('.').collect();
    for k in &keys[..keys.len() - 1] {
        cur = cur
            .as_object_mut()
            .expect("an object on the path")
            .entry(k.to_string())
            .or_insert_with(|| json!({}));
    }
    cur.as_object_mut()
        .expect("an object on the path")
        .insert(keys[keys.len() - 1].to_string(), x);
    v
}

fn remove(mut v: Value, path: &str) -> Value {
    let mut cur = &mut v;
    let keys: Vec<&str> = path.split('.').collect();
    for k in &keys[..keys.len() - 1] {
        cur = cur.get_mut(*k).expect("path exists");
    }
    cur.as_object_mut().unwrap().remove(keys[keys.len() - 1]);
    v
}

fn chars(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

/// Valid events at the edges of the contract: every limit exactly met,
/// every optional key present or absent, open objects with extra keys.
fn edge_valid_events() -> Vec<(String, Value)> {
    let a = base_address;
    let id = base_id_card;
    let ph = base_phone;
    let twenty: Map<String, Value> = (0..17)
        .map(|i| (format!("k{i}"), json!(i)))
        .chain([
            ("carrier".to_string(), json!("中国移动")),
            ("number_type".to_string(), json!("mobile")),
            ("region".to_string(), json!("江苏南京")),
        ])
        .collect();
    let sixteen: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    vec![
        ("schema_version 1.0", set(a(), "schema_version", json!(1.0))),
        (
            "age 34.0 is an integer",
            set(
                id(),
                "governance_result.birth_date_analysis",
                json!({"age": 34.0}),
            ),
        ),
        (
            "age 0",
            set(
                id(),
                "governance_result.birth_date_analysis",
                json!({"age": 0}),
            ),
        ),
        (
            "age 200",
            set(
                id(),
                "governance_result.birth_date_analysis",
                json!({"age": 200, "extracted_date": "1824-01-01", "reasonableness": "x"}),
            ),
        ),
        (
            "scores at 0 and 1",
            set(
                set(a(), "original_data.quality_score", json!(0)),
                "governance_result.confidence_score",
                json!(1.0),
            ),
        ),
        (
            "scores at -0.0",
            set(a(), "original_data.quality_score", json!(-0.0)),
        ),
        (
            "coordinates at the poles",
            set(
                a(),
                "governance_result.geocoding_result",
                json!({"latitude": -90, "longitude": 180.0}),
            ),
        ),
        (
            "coordinates at the other bounds",
            set(
                a(),
                "governance_result.geocoding_result",
                json!({"latitude": 90.0, "longitude": -180}),
            ),
        ),
        (
            "geocoding without keys",
            set(a(), "governance_result.geocoding_result", json!({})),
        ),
        (
            "500 CJK characters (1500 bytes)",
            set(a(), "original_data.address", json!(chars('中', 500))),
        ),
        (
            "500 astral characters",
            set(
                a(),
                "governance_result.standardized_address",
                json!(chars('😀', 500)),
            ),
        ),
        (
            "event_id of 64",
            set(a(), "event_id", json!(chars('e', 64))),
        ),
        (
            "batch_id of 128",
            set(a(), "batch_id", json!(format!("B{}", chars('.', 127)))),
        ),
        (
            "ident punctuation",
            set(a(), "customer_id", json!("0a.b_c:d-E")),
        ),
        (
            "no county, priority or batch",
            remove(remove(remove(a(), "county_code"), "priority"), "batch_id"),
        ),
        ("region_code of 2", set(a(), "region_code", json!("32"))),
        ("region_code of 6", set(a(), "region_code", json!("320102"))),
        ("extra keys in every open object", {
            let mut e = set(
                a(),
                "original_data.x_note",
                json!({"deep": [1, null, {"z": true}]}),
            );
            e = set(e, "governance_result.x", json!(null));
            e = set(
                e,
                "governance_result.geocoding_result.source",
                json!("amap"),
            );
            e = set(
                e,
                "governance_result.region_validation",
                json!({"other": 1}),
            );
            e = set(
                e,
                "governance_result.birth_date_analysis",
                json!({"other": [null]}),
            );
            set(
                e,
                "governance_result.activity_status",
                json!({"status": null, "n": [1, 2]}),
            )
        }),
        (
            "carrier_info with 20 keys",
            set(
                ph(),
                "governance_result.carrier_info",
                Value::Object(twenty),
            ),
        ),
        (
            "16 target fields",
            set(a(), "sync_operation.target_fields", json!(sixteen)),
        ),
        (
            "governed_at with nanoseconds and Z",
            set(a(), "governed_at", json!("2024-01-15T02:20:00.123456789Z")),
        ),
        (
            "governed_at with a negative offset",
            set(a(), "governed_at", json!("2024-01-15T02:20:00-05:30")),
        ),
        (
            "last_update RFC 3339",
            set(
                a(),
                "original_data.last_update",
                json!("2024-01-10T14:30:00+08:00"),
            ),
        ),
        (
            "last_update with space and offset",
            set(
                a(),
                "original_data.last_update",
                json!("2024-01-10 14:30:00Z"),
            ),
        ),
        (
            "last_update with fraction",
            set(
                a(),
                "original_data.last_update",
                json!("2024-01-10 14:30:00.5"),
            ),
        ),
        ("empty optional texts", {
            let mut e = set(a(), "original_data.name", json!(""));
            e = set(e, "original_data.data_source", json!(""));
            e = set(e, "original_data.phone", json!(""));
            e = set(e, "original_data.address", json!(""));
            e = set(e, "governance_result.reference_source", json!(""));
            set(e, "governance_result.suggested_correction", json!(""))
        }),
        ("lists at their limits", {
            let long: Vec<String> = (0..50)
                .map(|i| format!("{i}{}", chars('字', 497)))
                .collect();
            let rules: Vec<String> = (0..32).map(|i| format!("r{i}{}", chars('z', 60))).collect();
            let mut e = set(a(), "governance_result.quality_improvements", json!(long));
            e = set(e, "governance_result.issues", json!([]));
            e = set(e, "governance_result.risk_indicators", json!([""]));
            set(e, "sync_operation.validation_rules", json!(rules))
        }),
        (
            "DEL and U+2028 are not control characters here",
            set(
                a(),
                "original_data.address",
                json!("a\u{7f}b\u{2028}c\u{85}"),
            ),
        ),
        ("every optional key of an id_card event", {
            let mut e = set(
                id(),
                "governance_result.region_validation",
                json!({"region_code": "32", "region_name": "", "status": "valid"}),
            );
            e = set(
                e,
                "governance_result.birth_date_analysis",
                json!({"extracted_date": "1990-01-01", "age": 34, "reasonableness": "reasonable"}),
            );
            e = set(e, "governance_result.format_check", json!("failed"));
            e = set(e, "governance_result.risk_level", json!("a_1"));
            e = set(e, "sync_operation.review_priority", json!("low"));
            e = set(e, "sync_operation.requires_manual_review", json!(false));
            e = set(e, "sync_operation.backup_required", json!(false));
            set(e, "priority", json!("low"))
        }),
        (
            "insert operation without last_update",
            remove(
                set(ph(), "sync_operation.operation_type", json!("insert")),
                "original_data.last_update",
            ),
        ),
        (
            "format_validation invalid",
            set(
                ph(),
                "governance_result.format_validation",
                json!("invalid"),
            ),
        ),
        (
            "huge number in an open object",
            set(a(), "governance_result.x", json!(1e300)),
        ),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect()
}

fn valid_events() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = seed_files()
        .into_iter()
        .map(|(n, b)| (format!("seed {n}"), b))
        .collect();
    for (n, v) in generated_events(270).into_iter().chain(edge_valid_events()) {
        out.push((n, serde_json::to_vec(&v).unwrap()));
    }
    out
}

// --- mutations ------------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every node below the root, as paths.
fn paths(v: &Value) -> Vec<Vec<Step>> {
    fn walk(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    prefix.push(Step::Key(k.clone()));
                    out.push(prefix.clone());
                    walk(x, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    prefix.push(Step::Index(i));
                    out.push(prefix.clone());
                    walk(x, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match s {
            Step::Key(k) => cur.get_mut(k.as_str())?,
            Step::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

fn show(path: &[Step]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Characters that sit on the edges of the schema's patterns.
const PALETTE: &[char] = &[
    '\0', '\n', '\t', '\r', '\u{1f}', '\u{7f}', '\u{2028}', ' ', 'T', 't', 'Z', 'z', ':', '-', '+',
    '.', '_', 'A', 'a', '0', '9', '中', '😀', '/', '\\', '"', 'X', 'é',
];

const NUMBERS: &[f64] = &[
    0.0, -0.0, 1.0, 0.5, -0.000001, 1.000001, 2.0, -1.0, 34.0, 34.5, 90.0, 90.0001, -90.0001,
    180.0, 180.0001, -180.0001, 200.0, 200.5, 201.0, 1e300, -1e300, 1e16, 9.0e15,
];

const LENGTHS: &[usize] = &[
    0, 1, 2, 5, 6, 7, 9, 10, 11, 17, 18, 19, 20, 31, 32, 33, 40, 41, 63, 64, 65, 100, 101, 127,
    128, 129, 499, 500, 501, 100_000,
];

/// Valid values for the known optional keys, so that mutations also reach
/// keys the base events do not carry.
fn known_optional() -> Vec<(&'static str, Value)> {
    vec![
        ("priority", json!("low")),
        ("batch_id", json!("B_1")),
        ("county_code", json!("320102")),
        ("original_data.name", json!("张三")),
        ("original_data.data_source", json!("manual_input")),
        ("original_data.id_card", json!("320102199001011232")),
        ("original_data.phone", json!("13812345678")),
        (
            "original_data.address",
            json!("江苏省南京市玄武区中山路1号"),
        ),
        ("original_data.quality_score", json!(0.5)),
        (
            "governance_result.standardized_address",
            json!("江苏省南京市玄武区中山路1号"),
        ),
        ("governance_result.confidence_score", json!(0.5)),
        ("governance_result.validation_status", json!("verified")),
        (
            "governance_result.geocoding_result",
            json!({"latitude": 32.0, "longitude": 118.8, "accuracy": "building_level"}),
        ),
        (
            "governance_result.reference_source",
            json!("顺丰标准地址库"),
        ),
        (
            "governance_result.quality_improvements",
            json!(["补全省级信息"]),
        ),
        ("governance_result.format_check", json!("passed")),
        ("governance_result.checksum_validation", json!("passed")),
        (
            "governance_result.region_validation",
            json!({"region_code": "320102", "region_name": "玄武区", "status": "valid"}),
        ),
        (
            "governance_result.birth_date_analysis",
            json!({"extracted_date": "1990-01-01", "age": 34, "reasonableness": "reasonable"}),
        ),
        ("governance_result.issues", json!(["校验位错误"])),
        (
            "governance_result.suggested_correction",
            json!("320102199001011232"),
        ),
        ("governance_result.quality_score", json!(0.9)),
        ("governance_result.confidence", json!(0.9)),
        ("governance_result.risk_level", json!("high")),
        ("governance_result.format_validation", json!("valid")),
        (
            "governance_result.carrier_info",
            json!({"carrier": "中国移动", "number_type": "mobile", "region": "江苏"}),
        ),
        (
            "governance_result.activity_status",
            json!({"status": "active"}),
        ),
        ("governance_result.risk_indicators", json!(["none"])),
        ("sync_operation.backup_required", json!(true)),
        (
            "sync_operation.validation_rules",
            json!(["address_format_check"]),
        ),
        ("sync_operation.requires_manual_review", json!(true)),
        ("sync_operation.review_priority", json!("medium")),
    ]
}

fn random_string(rng: &mut StdRng) -> String {
    let len = LENGTHS[rng.random_range(0..LENGTHS.len())];
    let c = ['a', '0', '中', '😀', 'A', '_', '\0'][rng.random_range(0..7)];
    chars(c, len)
}

fn random_scalar(rng: &mut StdRng) -> Value {
    match rng.random_range(0..10) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(NUMBERS[rng.random_range(0..NUMBERS.len())]),
        3 => json!(rng.random_range(-5i64..300)),
        4 => json!([]),
        5 => json!({}),
        6 => json!("x"),
        7 => json!(""),
        8 => json!(["a", "a"]),
        _ => json!(random_string(rng)),
    }
}

/// Sets `path` (dot-separated keys) when every object on the way exists.
fn insert_at(v: &mut Value, path: &str, x: Value) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().expect("a path has a key");
    let mut cur = Some(v);
    for k in keys {
        cur = cur.and_then(|c| c.get_mut(k));
    }
    if let Some(o) = cur.and_then(Value::as_object_mut) {
        o.insert(last.into(), x);
    }
}

/// Applies one random mutation to `v`; returns its description.
fn mutate(v: &mut Value, rng: &mut StdRng) -> String {
    // Whole-document and envelope mutations.
    if rng.random_range(0..12) == 0 {
        let which = rng.random_range(0..10);
        let obj = v.as_object_mut().expect("an event is an object");
        return match which {
            0 => {
                let x = [
                    json!(2),
                    json!(0),
                    json!("1"),
                    json!(1.5),
                    json!(true),
                    Value::Null,
                    json!(1.0000001),
                ][rng.random_range(0..7)]
                .clone();
                let d = format!("schema_version = {x}");
                obj.insert("schema_version".into(), x);
                d
            }
            1 => {
                obj.insert("unknown_key".into(), random_scalar(rng));
                "unknown envelope key".into()
            }
            2 => {
                if let Some(so) = obj.get_mut("sync_operation").and_then(Value::as_object_mut) {
                    so.insert("retries".into(), json!(3));
                }
                "unknown sync_operation key".into()
            }
            3 => {
                let dt = ["address", "id_card", "phone"][rng.random_range(0..3)];
                obj.insert("data_type".into(), json!(dt));
                format!("data_type switched to {dt}")
            }
            4 => {
                let vals: Vec<Value> = obj.values().cloned().collect();
                *v = Value::Array(vals);
                "the event as an array of its values".into()
            }
            5 => {
                *v = random_scalar(rng);
                format!("the event replaced by {v}")
            }
            6 => {
                let dt = obj.get("data_type").cloned().unwrap_or_default();
                obj.insert(
                    "data_type".into(),
                    json!({ dt.as_str().unwrap_or("x"): null }),
                );
                "data_type as {variant: null}".into()
            }
            7 => {
                let inner = v.clone();
                *v = json!({ "event": inner });
                "the event nested in another object".into()
            }
            8 => {
                obj.clear();
                "empty object".into()
            }
            _ => {
                let (path, x) = known_optional().swap_remove(rng.random_range(0..32));
                insert_at(v, path, x);
                format!("{path} added")
            }
        };
    }
    if rng.random_range(0..6) == 0 {
        let (path, x) = known_optional().swap_remove(rng.random_range(0..32));
        insert_at(v, path, x);
        // and break it right away (or not) with the mutations below
        if rng.random_bool(0.3) {
            return format!("{path} added");
        }
    }
    let all = paths(v);
    let path = all[rng.random_range(0..all.len())].clone();
    let at = show(&path);
    let node = node_mut(v, &path).expect("path exists");
    let kind = rng.random_range(0..12);
    match (kind, &mut *node) {
        (0, _) => {
            // drop the key or element
            let (last, parent) = path.split_last().unwrap();
            let parent = node_mut(v, parent).unwrap();
            match (last, parent) {
                (Step::Key(k), Value::Object(m)) => {
                    m.remove(k);
                }
                (Step::Index(i), Value::Array(a)) => {
                    a.remove(*i);
                }
                _ => unreachable!(),
            }
            format!("{at} dropped")
        }
        (1, n) => {
            *n = Value::Null;
            format!("{at} = null")
        }
        (2, n) => {
            *n = random_scalar(rng);
            format!("{at} = {}", trunc(&n.to_string()))
        }
        (3, n) => {
            let inner = n.take();
            *n = if rng.random_bool(0.5) {
                json!([inner])
            } else {
                json!({ "value": inner })
            };
            format!("{at} nested")
        }
        (4, Value::Object(m)) => {
            let vals: Vec<Value> = m.values().cloned().collect();
            *node = Value::Array(vals);
            format!("{at} as an array of its values")
        }
        (4, Value::String(s)) => {
            let s = s.clone();
            *node = json!({ s: null });
            format!("{at} as {{value: null}}")
        }
        (5, Value::String(s)) => {
            let len = LENGTHS[rng.random_range(0..LENGTHS.len())];
            let c = ['a', '0', '中', '😀', 'A', '_'][rng.random_range(0..6)];
            *s = chars(c, len);
            format!("{at} = {len} × {c:?}")
        }
        (6 | 7, Value::String(s)) => {
            let mut cs: Vec<char> = s.chars().collect();
            let c = PALETTE[rng.random_range(0..PALETTE.len())];
            let i = rng.random_range(0..=cs.len());
            let what = match rng.random_range(0..3) {
                0 => {
                    cs.insert(i, c);
                    "inserted"
                }
                1 if i < cs.len() => {
                    cs[i] = c;
                    "replaced"
                }
                _ if !cs.is_empty() => {
                    cs.remove(i.min(cs.len() - 1));
                    "deleted"
                }
                _ => {
                    cs.push(c);
                    "appended"
                }
            };
            *s = cs.into_iter().collect();
            format!("{at}: {c:?} {what} at {i}")
        }
        (8, Value::String(s)) => {
            *s = match rng.random_range(0..4) {
                0 => s.to_uppercase(),
                1 => format!(" {s}"),
                2 => format!("{s}\n"),
                _ => s.replace('_', "-"),
            };
            format!("{at} = {}", trunc(s))
        }
        (5..=8, Value::Number(_)) => {
            let x = NUMBERS[rng.random_range(0..NUMBERS.len())];
            *node = if rng.random_bool(0.3) && x.fract() == 0.0 && x.abs() < 1e15 {
                json!(x as i64)
            } else {
                json!(x)
            };
            format!("{at} = {node}")
        }
        (5..=8, Value::Array(a)) => {
            let what = match rng.random_range(0..7) {
                0 => {
                    a.clear();
                    "emptied"
                }
                1 if !a.is_empty() => {
                    let x = a[0].clone();
                    a.push(x);
                    "first item duplicated"
                }
                2 => {
                    a.push(random_scalar(rng));
                    "an item added"
                }
                3 => {
                    a.extend((0..17).map(|i| json!(format!("f{i}"))));
                    "17 items added"
                }
                4 => {
                    a.extend((0..51).map(|i| json!(format!("f{i}"))));
                    "51 items added"
                }
                5 => {
                    a.push(json!("quality_score"));
                    "quality_score added"
                }
                _ => {
                    a.reverse();
                    "reversed"
                }
            };
            format!("{at}: {what}")
        }
        (5..=8, Value::Object(m)) => {
            let what = match rng.random_range(0..4) {
                0 => {
                    m.insert("x_extra".into(), random_scalar(rng));
                    "extra key"
                }
                1 => {
                    m.clear();
                    "emptied"
                }
                2 => {
                    for i in 0..21 {
                        m.insert(format!("k{i}"), json!(i));
                    }
                    "21 keys added"
                }
                _ => {
                    m.insert("carrier".into(), random_scalar(rng));
                    "carrier key set"
                }
            };
            format!("{at}: {what}")
        }
        (9, Value::Number(n)) => {
            // 34 → 34.0 and back
            let f = n.as_f64().unwrap();
            *node = if n.is_f64() && f.fract() == 0.0 {
                json!(f as i64)
            } else {
                json!(f)
            };
            format!("{at} = {node} (same number, other spelling)")
        }
        (10, Value::Bool(b)) => {
            *node = json!(if *b { "true" } else { "false" });
            format!("{at} as a string")
        }
        (10, Value::Number(n)) => {
            *node = json!(n.to_string());
            format!("{at} as a string")
        }
        (10, Value::String(s)) if s.parse::<f64>().is_ok() => {
            *node = json!(s.parse::<f64>().unwrap());
            format!("{at} as a number")
        }
        (11, Value::String(s)) => {
            *s = random_string(rng);
            format!("{at} = random string of {}", s.chars().count())
        }
        _ => {
            *node = random_scalar(rng);
            format!("{at} = {}", trunc(&node.to_string()))
        }
    }
}

fn trunc(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Mutations named in the issue, spelled out so that each is always covered.
fn named_mutations() -> Vec<(String, Vec<u8>)> {
    let a = base_address;
    let id = base_id_card;
    let ph = base_phone;
    let to = |v: Value| serde_json::to_vec(&v).unwrap();
    let mut out: Vec<(&str, Vec<u8>)> = vec![
        ("no event_id", to(remove(a(), "event_id"))),
        ("no sync_operation", to(remove(a(), "sync_operation"))),
        (
            "no target_fields",
            to(remove(a(), "sync_operation.target_fields")),
        ),
        (
            "address without original address",
            to(remove(a(), "original_data.address")),
        ),
        (
            "address without standardized_address",
            to(remove(a(), "governance_result.standardized_address")),
        ),
        (
            "id_card without checksum_validation",
            to(remove(id(), "governance_result.checksum_validation")),
        ),
        (
            "id_card without id_card",
            to(remove(id(), "original_data.id_card")),
        ),
        (
            "phone without phone",
            to(remove(ph(), "original_data.phone")),
        ),
        (
            "phone event called address",
            to(set(ph(), "data_type", json!("address"))),
        ),
        ("event_id a number", to(set(a(), "event_id", json!(17)))),
        (
            "quality_score a string",
            to(set(a(), "original_data.quality_score", json!("0.5"))),
        ),
        (
            "backup_required a string",
            to(set(a(), "sync_operation.backup_required", json!("true"))),
        ),
        (
            "target_fields a string",
            to(set(a(), "sync_operation.target_fields", json!("address"))),
        ),
        (
            "sync_operation positional",
            to(set(a(), "sync_operation", json!(["update", ["address"]]))),
        ),
        (
            "original_data positional",
            to(set(a(), "original_data", json!(["addr"]))),
        ),
        (
            "geocoding positional",
            to(set(
                a(),
                "governance_result.geocoding_result",
                json!([32.0, 118.0]),
            )),
        ),
        (
            "governance_result empty array",
            to(set(a(), "governance_result", json!([]))),
        ),
        (
            "priority as {high: null}",
            to(set(a(), "priority", json!({"high": null}))),
        ),
        (
            "operation_type as {update: null}",
            to(set(
                a(),
                "sync_operation.operation_type",
                json!({"update": null}),
            )),
        ),
        (
            "checksum_validation as {passed: null}",
            to(set(
                id(),
                "governance_result.checksum_validation",
                json!({"passed": null}),
            )),
        ),
        (
            "event_id nested",
            to(set(a(), "event_id", json!({"id": "x"}))),
        ),
        (
            "address nested",
            to(set(a(), "original_data.address", json!(["江苏"]))),
        ),
        (
            "huge address",
            to(set(
                a(),
                "original_data.address",
                json!(chars('中', 200_000)),
            )),
        ),
        (
            "address of 501",
            to(set(a(), "original_data.address", json!(chars('😀', 501)))),
        ),
        (
            "NUL in address",
            to(set(a(), "original_data.address", json!("江苏\u{0}南京"))),
        ),
        (
            "NUL in event_id",
            to(set(a(), "event_id", json!("a\u{0}b"))),
        ),
        (
            "newline in name",
            to(set(id(), "original_data.name", json!("张\n三"))),
        ),
        (
            "escape in carrier",
            to(set(
                ph(),
                "governance_result.carrier_info.carrier",
                json!("\u{1b}[31m"),
            )),
        ),
        (
            "empty standardized_address",
            to(set(
                a(),
                "governance_result.standardized_address",
                json!(""),
            )),
        ),
        ("empty event_id", to(set(a(), "event_id", json!("")))),
        ("empty batch_id", to(set(a(), "batch_id", json!("")))),
        (
            "empty validation_status",
            to(set(a(), "governance_result.validation_status", json!(""))),
        ),
        (
            "empty accuracy",
            to(set(
                a(),
                "governance_result.geocoding_result.accuracy",
                json!(""),
            )),
        ),
        (
            "empty target field",
            to(set(a(), "sync_operation.target_fields", json!([""]))),
        ),
        (
            "unknown data_type",
            to(set(a(), "data_type", json!("email"))),
        ),
        (
            "data_type upper case",
            to(set(a(), "data_type", json!("ADDRESS"))),
        ),
        (
            "operation_type delete",
            to(set(a(), "sync_operation.operation_type", json!("delete"))),
        ),
        ("priority urgent", to(set(a(), "priority", json!("urgent")))),
        (
            "review_priority standard",
            to(set(
                id(),
                "sync_operation.review_priority",
                json!("standard"),
            )),
        ),
        (
            "format_check ok",
            to(set(id(), "governance_result.format_check", json!("ok"))),
        ),
        ("null priority", to(set(a(), "priority", Value::Null))),
        ("null county_code", to(set(a(), "county_code", Value::Null))),
        (
            "null quality_score",
            to(set(a(), "original_data.quality_score", Value::Null)),
        ),
        (
            "null geocoding",
            to(set(a(), "governance_result.geocoding_result", Value::Null)),
        ),
        (
            "null carrier",
            to(set(
                ph(),
                "governance_result.carrier_info.carrier",
                Value::Null,
            )),
        ),
        (
            "null activity_status",
            to(set(ph(), "governance_result.activity_status", Value::Null)),
        ),
        (
            "null target_fields item",
            to(set(
                a(),
                "sync_operation.target_fields",
                json!(["address", null]),
            )),
        ),
        (
            "quality_score 1.01",
            to(set(a(), "original_data.quality_score", json!(1.01))),
        ),
        (
            "confidence -0.1",
            to(set(id(), "governance_result.confidence", json!(-0.1))),
        ),
        (
            "latitude 91",
            to(set(
                a(),
                "governance_result.geocoding_result.latitude",
                json!(91),
            )),
        ),
        (
            "longitude -180.5",
            to(set(
                a(),
                "governance_result.geocoding_result.longitude",
                json!(-180.5),
            )),
        ),
        (
            "age 201",
            to(set(
                id(),
                "governance_result.birth_date_analysis",
                json!({"age": 201}),
            )),
        ),
        (
            "age 34.5",
            to(set(
                id(),
                "governance_result.birth_date_analysis",
                json!({"age": 34.5}),
            )),
        ),
        (
            "age -1",
            to(set(
                id(),
                "governance_result.birth_date_analysis",
                json!({"age": -1}),
            )),
        ),
        (
            "duplicate target field",
            to(set(
                a(),
                "sync_operation.target_fields",
                json!(["address", "quality_score", "address"]),
            )),
        ),
        (
            "no target fields",
            to(set(a(), "sync_operation.target_fields", json!([]))),
        ),
        (
            "17 target fields",
            to(set(
                a(),
                "sync_operation.target_fields",
                json!((0..17).map(|i| format!("c{i}")).collect::<Vec<_>>()),
            )),
        ),
        (
            "upper-case target field",
            to(set(a(), "sync_operation.target_fields", json!(["Address"]))),
        ),
        ("schema_version 2", to(set(a(), "schema_version", json!(2)))),
        (
            "schema_version \"1\"",
            to(set(a(), "schema_version", json!("1"))),
        ),
        (
            "schema_version null",
            to(set(a(), "schema_version", Value::Null)),
        ),
        ("no schema_version", to(remove(a(), "schema_version"))),
        ("unknown envelope key", to(set(a(), "extra", json!(1)))),
        (
            "envelope key in another case",
            to(set(remove(a(), "event_id"), "Event_Id", json!("e1"))),
        ),
        (
            "unknown sync_operation key",
            to(set(a(), "sync_operation.dry_run", json!(true))),
        ),
        (
            "carrier_info with 21 keys",
            to(set(
                ph(),
                "governance_result.carrier_info",
                Value::Object((0..21).map(|i| (format!("k{i}"), json!(i))).collect()),
            )),
        ),
        (
            "51 issues",
            to(set(id(), "governance_result.issues", json!(vec!["x"; 51]))),
        ),
        (
            "33 validation rules",
            to(set(
                a(),
                "sync_operation.validation_rules",
                json!(vec!["r"; 33]),
            )),
        ),
        (
            "governed_at without offset",
            to(set(a(), "governed_at", json!("2024-01-15T10:20:00"))),
        ),
        (
            "governed_at with a space",
            to(set(a(), "governed_at", json!("2024-01-15 10:20:00+08:00"))),
        ),
        (
            "governed_at with 10 fraction digits",
            to(set(
                a(),
                "governed_at",
                json!("2024-01-15T10:20:00.0123456789Z"),
            )),
        ),
        (
            "governed_at lower-case z",
            to(set(a(), "governed_at", json!("2024-01-15T10:20:00z"))),
        ),
        (
            "last_update a date",
            to(set(a(), "original_data.last_update", json!("2024-01-10"))),
        ),
        (
            "extracted_date with slashes",
            to(set(
                id(),
                "governance_result.birth_date_analysis",
                json!({"extracted_date": "1990/01/01"}),
            )),
        ),
        (
            "county_code of 5",
            to(set(a(), "county_code", json!("32010"))),
        ),
        (
            "region_code with letters",
            to(set(a(), "region_code", json!("32AB"))),
        ),
        (
            "region_code full-width digits",
            to(set(a(), "region_code", json!("３２０１"))),
        ),
        (
            "validation_status with a dash",
            to(set(
                a(),
                "governance_result.validation_status",
                json!("not-verified"),
            )),
        ),
    ]
    .into_iter()
    .collect();
    // Byte-level: not one JSON text.
    let good = seed(1);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b" x");
    let mut two = good.clone();
    two.extend_from_slice(&good);
    let mut bom = "\u{feff}".as_bytes().to_vec();
    bom.extend_from_slice(&good);
    let mut spaced = b" \n\t".to_vec();
    spaced.extend_from_slice(&good);
    spaced.extend_from_slice(b"\r\n ");
    let mut latin1 = good.clone();
    let pos = latin1.iter().position(|&b| b >= 0x80).unwrap();
    latin1[pos] = 0xff;
    out.extend([
        ("trailing garbage", trailing),
        ("two events in one message", two),
        ("byte order mark", bom),
        ("surrounding whitespace (valid)", spaced),
        ("not UTF-8", latin1),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("null", b"null".to_vec()),
    ]);
    out.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

fn mutated_events(valid: &[(String, Vec<u8>)], n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = named_mutations();
    for _ in 0..n {
        let (base_name, base) = &valid[rng.random_range(0..valid.len())];
        let mut v: Value = serde_json::from_slice(base).unwrap();
        let rounds = if rng.random_bool(0.75) {
            1
        } else {
            rng.random_range(2..4)
        };
        let mut what = Vec::new();
        for _ in 0..rounds {
            if v.as_object().is_none_or(|o| o.is_empty()) {
                break;
            }
            what.push(mutate(&mut v, &mut rng));
        }
        out.push((
            format!("{base_name}: {}", what.join("; ")),
            serde_json::to_vec(&v).unwrap(),
        ));
    }
    out
}

// --- 3a: the schema and the decoder agree --------------------------------

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

// --- 3b: the side outputs match their schemas -------------------------------

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

// --- 3c: no panics ------------------------------------------------------

/// Arbitrary bytes, and JSON documents mutated the way the agreement test
/// mutates them (plus byte-level damage), never make `decode` or `decode_and_check`
/// panic. Deterministic (fixed seeds) and bounded: a few thousand cases.
#[test]
fn decoding_and_checking_never_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let started = Instant::now();
    let rules = RuleSet::default();
    let run = |bytes: &[u8]| {
        let _ = event::decode(bytes, 4096);
        let _ = event::decode_and_check(bytes, NO_LIMIT, &rules);
    };
    let config = Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    };

    // 1. Random bytes, biased towards JSON punctuation.
    let mut runner = TestRunner::new_with_rng(
        config.clone(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    // Even bytes become JSON punctuation, odd ones stay as they are.
    const PUNCT: &[u8] = b"{}[]\":,0123456789.eE+-tfnul \\";
    let bytes = proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| {
        v.into_iter()
            .map(|b| {
                if b % 2 == 0 {
                    PUNCT[usize::from(b / 2) % PUNCT.len()]
                } else {
                    b
                }
            })
            .collect::<Vec<u8>>()
    });
    runner
        .run(&bytes, |bytes| {
            run(&bytes);
            Ok(())
        })
        .unwrap();

    let t1 = started.elapsed();
    // 2. Mutated valid events (1–5 mutations), then sometimes byte damage.
    let valid = valid_events();
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let cases = std::cell::Cell::new(0);
    runner
        .run(&(0..valid.len(), any::<u64>()), |(i, seed)| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut v: Value = serde_json::from_slice(&valid[i].1).unwrap();
            for _ in 0..rng.random_range(1..6) {
                if v.as_object().is_none_or(|o| o.is_empty()) {
                    break;
                }
                mutate(&mut v, &mut rng);
            }
            let mut bytes = serde_json::to_vec(&v).unwrap();
            match rng.random_range(0..4) {
                0 if !bytes.is_empty() => {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
                1 => bytes.truncate(rng.random_range(0..=bytes.len())),
                _ => {}
            }
            run(&bytes);
            cases.set(cases.get() + 1);
            Ok(())
        })
        .unwrap();

    let t2 = started.elapsed();
    // 3. Values the rules parse: ID numbers, phone numbers, times.
    let mut rng = StdRng::seed_from_u64(0x1d_ca4d);
    let digits = |rng: &mut StdRng, n: usize| -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    };
    let mut rule_cases = 0;
    for i in 0..1500 {
        let mut v: Value = serde_json::from_slice(&valid[i % valid.len()].1).unwrap();
        let n = [15, 17, 18, 18, 18, 19][rng.random_range(0..6)];
        let mut id = digits(&mut rng, n);
        if rng.random_bool(0.2) {
            id.push(['x', 'X', '中', ' '][rng.random_range(0..4)]);
        }
        let phone = match rng.random_range(0..5) {
            0 => {
                let n = rng.random_range(0..20);
                digits(&mut rng, n)
            }
            1 => {
                let n = rng.random_range(1..16);
                format!("+{}", digits(&mut rng, n))
            }
            2 => format!("+86 {} {}", digits(&mut rng, 3), digits(&mut rng, 8)),
            3 => "+".repeat(rng.random_range(1..5)),
            _ => format!("{}-{}", digits(&mut rng, 4), digits(&mut rng, 8)),
        };
        let time = format!(
            "{}-{}-{}T{}:{}:{}{}",
            digits(&mut rng, 4),
            digits(&mut rng, 2),
            digits(&mut rng, 2),
            digits(&mut rng, 2),
            digits(&mut rng, 2),
            digits(&mut rng, 2),
            ["Z", "+23:59", "-99:99", "+08:00", ".999999999Z"][rng.random_range(0..5)]
        );
        let loose = format!("{} {}", &time[..10], &time[11..19]);
        v["original_data"]["id_card"] = json!(id);
        v["governance_result"]["suggested_correction"] = json!(digits(&mut rng, 18));
        v["original_data"]["phone"] = json!(phone);
        if rng.random_bool(0.5) {
            v["governed_at"] = json!(time);
        } else {
            v["original_data"]["last_update"] = json!(loose);
        }
        v["county_code"] = json!(digits(&mut rng, 6));
        v["governance_result"]["standardized_address"] = json!(
            [
                "北京市",
                "省",
                "市区",
                "江苏省南京市玄武区",
                "a",
                "上海市浦东新区"
            ][rng.random_range(0..6)]
        );
        run(&serde_json::to_vec(&v).unwrap());
        rule_cases += 1;
    }
    println!(
        "decoding_and_checking_never_panic: 2000 byte strings ({t1:?}), {} mutated events ({:?}), {rule_cases} rule inputs ({:?})",
        cases.get(),
        t2 - t1,
        started.elapsed() - t2
    );
}

// --- 3d: ID cards against an independent MOD 11-2 ------------------------

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

        // Single-character corruptions: every one of the 163 for the first
        // numbers, then one per number, cycling through the 18 positions.
        let mut corruptions: Vec<(usize, u8)> = Vec::new();
        if k < EXHAUSTIVE {
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
        for (pos, c) in corruptions {
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

// --- 3e: the seed records' verdicts -----------------------------------------

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
