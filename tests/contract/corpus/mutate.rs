//! Random mutations of a valid event: of the whole document, of the
//! envelope, or of one node anywhere in it, biased towards the edges of
//! the schema's patterns, lengths and ranges.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use super::chars;

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
pub fn mutate(v: &mut Value, rng: &mut StdRng) -> String {
    // Whole-document and envelope mutations.
    if rng.random_range(0..12) == 0 {
        return mutate_document(v, rng);
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
    mutate_node(v, &path, rng)
}

/// A mutation of the whole document or of its envelope.
fn mutate_document(v: &mut Value, rng: &mut StdRng) -> String {
    let which = rng.random_range(0..10);
    let obj = v.as_object_mut().expect("an event is an object");
    match which {
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
    }
}

/// A mutation of the node at `path`: dropped, replaced, nested, reshaped,
/// or edited according to its type.
fn mutate_node(v: &mut Value, path: &[Step], rng: &mut StdRng) -> String {
    let at = show(path);
    let node = node_mut(v, path).expect("path exists");
    let kind = rng.random_range(0..12);
    match (kind, &mut *node) {
        (0, _) => drop_node(v, path, &at),
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
        (6 | 7, Value::String(s)) => edit_char(s, rng, &at),
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
        (5..=8, Value::Array(a)) => edit_array(a, rng, &at),
        (5..=8, Value::Object(m)) => edit_object(m, rng, &at),
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

/// Drops the key or element at `path`.
fn drop_node(v: &mut Value, path: &[Step], at: &str) -> String {
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

/// Inserts, replaces or deletes one character of the palette.
fn edit_char(s: &mut String, rng: &mut StdRng, at: &str) -> String {
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

/// Empties, grows past the limits, or reorders an array.
fn edit_array(a: &mut Vec<Value>, rng: &mut StdRng, at: &str) -> String {
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

/// Adds keys to, or empties, an object.
fn edit_object(m: &mut Map<String, Value>, rng: &mut StdRng, at: &str) -> String {
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

pub fn trunc(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}
