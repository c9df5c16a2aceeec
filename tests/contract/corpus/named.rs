//! The mutations named in the issue (a table), JSON-level and byte-level.

use serde_json::{Value, json};

use super::{base_address, base_id_card, base_phone, chars, remove, set};
use crate::schemas::seed;

/// Mutations named in the issue, spelled out so that each is always covered.
pub fn named_mutations() -> Vec<(String, Vec<u8>)> {
    let mut out = json_level();
    out.extend(byte_level());
    out.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

/// Documents that are one JSON text but break the contract.
fn json_level() -> Vec<(&'static str, Vec<u8>)> {
    let a = base_address;
    let id = base_id_card;
    let ph = base_phone;
    let to = |v: Value| serde_json::to_vec(&v).unwrap();
    vec![
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
}

/// Byte-level: not one JSON text.
fn byte_level() -> Vec<(&'static str, Vec<u8>)> {
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
    vec![
        ("trailing garbage", trailing),
        ("two events in one message", two),
        ("byte order mark", bom),
        ("surrounding whitespace (valid)", spaced),
        ("not UTF-8", latin1),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("null", b"null".to_vec()),
    ]
}
