//! Valid events at the edges of the contract (a table).

use serde_json::{Map, Value, json};

use super::{base_address, base_id_card, base_phone, chars, remove, set};

/// Valid events at the edges of the contract: every limit exactly met,
/// every optional key present or absent, open objects with extra keys.
pub fn edge_valid_events() -> Vec<(String, Value)> {
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
