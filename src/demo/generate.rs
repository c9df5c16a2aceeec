//! Realistic governance events and customer rows, deterministic from a
//! seed: the demo's workload, the tests' data and the benchmarks' load.
//! Shapes follow the seed document's sample records.

use chrono::{DateTime, Duration, FixedOffset, TimeZone};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::event::{DataType, idcard};

/// A region: prefecture code, its province and city names, districts.
struct Region {
    code: &'static str,
    province: &'static str,
    city: &'static str,
    /// (county code, district name, latitude, longitude)
    districts: &'static [(&'static str, &'static str, f64, f64)],
    streets: &'static [&'static str],
}

const REGIONS: &[Region] = &[
    Region {
        code: "3201",
        province: "江苏省",
        city: "南京市",
        districts: &[
            ("320102", "玄武区", 32.05, 118.80),
            ("320105", "建邺区", 32.00, 118.73),
            ("320106", "鼓楼区", 32.07, 118.77),
        ],
        streets: &["中山路", "江东中路", "北京西路", "汉中路"],
    },
    Region {
        code: "3202",
        province: "江苏省",
        city: "无锡市",
        districts: &[
            ("320213", "梁溪区", 31.57, 120.30),
            ("320214", "新吴区", 31.55, 120.36),
        ],
        streets: &["人民中路", "长江路", "中山路"],
    },
    Region {
        code: "3205",
        province: "江苏省",
        city: "苏州市",
        districts: &[
            ("320505", "虎丘区", 31.30, 120.57),
            ("320508", "姑苏区", 31.31, 120.61),
            ("320583", "昆山市", 31.38, 120.98),
        ],
        streets: &["干将路", "人民路", "前进西路"],
    },
    Region {
        code: "3301",
        province: "浙江省",
        city: "杭州市",
        districts: &[
            ("330102", "上城区", 30.24, 120.17),
            ("330106", "西湖区", 30.26, 120.13),
        ],
        streets: &["延安路", "文三路", "解放路"],
    },
];

pub const SURNAMES: &[&str] = &["张", "李", "王", "刘", "陈", "杨", "赵", "黄", "周", "吴"];
pub const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "磊", "强", "洋", "艳", "勇", "军", "杰",
];
const MOBILE_PREFIXES: &[&str] = &[
    "138", "139", "150", "151", "186", "187", "135", "158", "188", "199",
];

/// A customer row to seed, and what governance will say about it.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub region: &'static str,
    pub county: &'static str,
    pub name: String,
    /// As stored (unstandardised).
    pub raw_address: String,
    /// What address governance produces.
    pub std_address: String,
    pub lat: f64,
    pub lon: f64,
    pub id_card: String,
    pub phone: String,
    pub quality_score: f64,
}

/// The time the engine read every seeded row (the rows' last_update).
pub fn seen_last_update() -> &'static str {
    "2024-01-10 14:30:00"
}

pub fn local() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// `seen_last_update()` as a time.
pub fn seen_last_update_time() -> DateTime<chrono::Utc> {
    crate::event::rules::parse_loose_time(seen_last_update(), local())
        .expect("seen_last_update() is a valid time")
}

/// Inserts customers into a PostgreSQL `customer_profile` as the business
/// side holds them before governance (raw address, last_update as the
/// engine saw it, version 0), 10,000 rows a statement. For the tests and
/// benchmarks.
pub async fn seed_postgres(pool: &sqlx::PgPool, customers: &[Customer]) -> Result<(), sqlx::Error> {
    let seen = seen_last_update_time();
    for chunk in customers.chunks(10_000) {
        sqlx::query(
            "INSERT INTO customer_profile (customer_id, name, address, id_card, phone, quality_score, last_update, version) \
             SELECT u.id, u.name, u.address, u.id_card, u.phone, u.score, $7, 0 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[]) \
             AS u(id, name, address, id_card, phone, score)",
        )
        .bind(chunk.iter().map(|c| c.id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.name.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.raw_address.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.id_card.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.phone.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| c.quality_score).collect::<Vec<_>>())
        .bind(seen)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Governance time of the `i`-th generated event (one second apart).
pub fn governed_at(i: usize) -> DateTime<FixedOffset> {
    local()
        .with_ymd_and_hms(2024, 1, 15, 10, 0, 0)
        .single()
        .expect("valid time")
        + Duration::seconds(i as i64)
}

/// `n` customers spread over the first `regions` regions (1–4).
pub fn customers(n: usize, regions: usize, seed: u64) -> Vec<Customer> {
    let mut rng = StdRng::seed_from_u64(seed);
    let regions = &REGIONS[..regions.clamp(1, REGIONS.len())];
    (0..n)
        .map(|i| {
            let r = &regions[i % regions.len()];
            let (county, district, lat, lon) = r.districts[rng.random_range(0..r.districts.len())];
            let street = r.streets[rng.random_range(0..r.streets.len())];
            let no = rng.random_range(1..999);
            let city_short = r.city.trim_end_matches('市');
            let province_short = r.province.trim_end_matches('省');
            let raw_address = match i % 3 {
                0 => format!("{province_short}{city_short}{district}{street}{no}"),
                1 => format!("{}{district}{street}", r.city),
                _ => format!("{city_short}{street}{no}号"),
            };
            let std_address = format!("{}{}{district}{street}{no}号", r.province, r.city);
            let first17 = format!(
                "{county}{:04}{:02}{:02}{:03}",
                rng.random_range(1950..2004),
                rng.random_range(1..13),
                rng.random_range(1..29),
                rng.random_range(0..1000)
            );
            let check = idcard::check_char(&first17).expect("17 digits");
            let phone = format!(
                "{}{:08}",
                MOBILE_PREFIXES[rng.random_range(0..MOBILE_PREFIXES.len())],
                rng.random_range(0..100_000_000u32)
            );
            Customer {
                id: format!("CUST_{county}_{i:07}"),
                region: r.code,
                county,
                name: format!(
                    "{}{}",
                    SURNAMES[rng.random_range(0..SURNAMES.len())],
                    GIVEN[rng.random_range(0..GIVEN.len())]
                ),
                raw_address,
                std_address,
                lat: lat + rng.random_range(-0.02..0.02),
                lon: lon + rng.random_range(-0.02..0.02),
                id_card: format!("{first17}{check}"),
                phone,
                quality_score: (rng.random_range(30..80) as f64) / 100.0,
            }
        })
        .collect()
}

/// An event for customer `c` of the given kind.
pub fn event(
    c: &Customer,
    data_type: DataType,
    event_id: &str,
    at: DateTime<FixedOffset>,
    high: bool,
) -> Value {
    let mut e = json!({
        "schema_version": 1,
        "event_id": event_id,
        "batch_id": format!("{}_SYNC_{}", match data_type { DataType::Address => "ADDR", DataType::IdCard => "ID", DataType::Phone => "PHONE" }, at.format("%Y%m%d")),
        "region_code": c.region,
        "county_code": c.county,
        "data_type": data_type.as_str(),
        "priority": if high { "high" } else { "standard" },
        "governed_at": at.to_rfc3339(),
        "customer_id": c.id,
    });
    let (original, result, op) = match data_type {
        DataType::Address => (
            json!({"address": c.raw_address, "last_update": seen_last_update(), "data_source": "manual_input", "quality_score": c.quality_score}),
            json!({
                "standardized_address": c.std_address,
                "confidence_score": 0.9,
                "validation_status": "verified",
                "geocoding_result": {"latitude": c.lat, "longitude": c.lon, "accuracy": "building_level"},
                "reference_source": "顺丰标准地址库"
            }),
            json!({"operation_type": "update", "target_fields": ["address", "geo_lat", "geo_lon", "quality_score", "last_governance_time"], "backup_required": true}),
        ),
        DataType::IdCard => (
            json!({"id_card": c.id_card, "name": c.name, "last_update": seen_last_update(), "quality_score": c.quality_score}),
            json!({"validation_status": "valid", "format_check": "passed", "checksum_validation": "passed", "quality_score": 0.95, "confidence": 0.98}),
            json!({"operation_type": "update", "target_fields": ["quality_score", "validation_status", "last_governance_time"], "backup_required": false}),
        ),
        DataType::Phone => (
            json!({"phone": c.phone, "last_update": seen_last_update(), "quality_score": c.quality_score}),
            json!({
                "format_validation": "valid",
                "carrier_info": {"carrier": "中国移动", "number_type": "mobile", "region": c.region},
                "quality_score": 0.9
            }),
            json!({"operation_type": "update", "target_fields": ["phone", "quality_score", "carrier_info", "last_governance_time"], "backup_required": false}),
        ),
    };
    e["original_data"] = original;
    e["governance_result"] = result;
    e["sync_operation"] = op;
    e
}

/// An ID-card event whose number has a wrong check digit, correctly
/// flagged by the engine (flag_for_review).
pub fn bad_check_digit_event(c: &Customer, event_id: &str, at: DateTime<FixedOffset>) -> Value {
    let good = c.id_card.chars().last().unwrap_or('0');
    let bad = if good == '0' { '1' } else { '0' };
    let mut wrong = c.id_card.clone();
    wrong.pop();
    wrong.push(bad);
    let mut e = event(c, DataType::IdCard, event_id, at, false);
    e["original_data"]["id_card"] = json!(wrong);
    e["governance_result"] = json!({
        "validation_status": "invalid", "format_check": "passed", "checksum_validation": "failed",
        "issues": ["校验位错误"], "quality_score": 0.25, "confidence": 0.85, "risk_level": "high"
    });
    e["sync_operation"] = json!({
        "operation_type": "flag_for_review", "target_fields": ["quality_score", "validation_status", "review_flag"],
        "requires_manual_review": true, "review_priority": "high"
    });
    e
}

/// A deterministic random source for workload mixes.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Disposition, RuleSet, decode_and_check};

    #[test]
    fn generated_events_are_valid_and_bad_digits_flag() {
        let rules = RuleSet::default();
        let cs = customers(40, 4, 7);
        for (i, c) in cs.iter().enumerate() {
            for dt in DataType::ALL {
                let e = event(c, dt, &format!("e-{i}-{dt}"), governed_at(i), i % 2 == 0);
                let bytes = serde_json::to_vec(&e).unwrap();
                let checked = decode_and_check(&bytes, 1 << 20, &rules)
                    .unwrap_or_else(|r| panic!("{dt} {}: {e}", r.rejection));
                assert_eq!(checked.disposition, Disposition::Apply, "{e}");
            }
            let bad = serde_json::to_vec(&bad_check_digit_event(c, "bad", governed_at(i))).unwrap();
            let checked = decode_and_check(&bad, 1 << 20, &rules)
                .unwrap_or_else(|r| panic!("{}", r.rejection));
            assert!(matches!(checked.disposition, Disposition::Flag(_)));
        }
    }
}
