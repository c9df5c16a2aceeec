//! The demo database's starting rows: the seed document's six customers,
//! then the generated ones as the business side holds them before
//! governance.

use serde_json::{Value, json};

use super::generate::{self, Customer};

/// The seed document's customers, then the generated ones. The first
/// `conflicted` generated customers were changed by customer service after
/// the engine read them (their events become conflicts).
pub(super) async fn seed_rows(
    pool: &sqlx::SqlitePool,
    customers: &[Customer],
    conflicted: usize,
) -> anyhow::Result<()> {
    use crate::sink::sqlite::time_text;
    let local = generate::local();
    let t = |s: &str| crate::event::rules::parse_loose_time(s, local).map(time_text);
    let mut rows: Vec<Value> = vec![
        json!([
            "CUST_320102_001",
            "王一",
            "江苏南京玄武区中山路123",
            null,
            null,
            0.65,
            t("2024-01-10 14:30:00")
        ]),
        json!([
            "CUST_320102_002",
            "王二",
            "南京市建邺区江东中路",
            null,
            null,
            0.45,
            t("2024-01-08 09:15:00")
        ]),
        json!([
            "CUST_320102_003",
            "张三",
            "江苏省南京市玄武区北京东路1号",
            "32010219900101123X",
            null,
            0.70,
            t("2024-01-05 16:20:00")
        ]),
        json!([
            "CUST_320102_004",
            "李四",
            "江苏省南京市玄武区北京东路2号",
            "320102199001011234",
            null,
            0.30,
            t("2024-01-03 11:45:00")
        ]),
        json!([
            "CUST_320102_005",
            "王五",
            "江苏省南京市玄武区北京东路3号",
            null,
            "13812345678",
            0.80,
            t("2024-01-12 10:30:00")
        ]),
        json!([
            "CUST_320102_006",
            "赵六",
            "江苏省南京市玄武区中山路123号A座",
            null,
            null,
            0.65,
            t("2024-01-15 10:25:00")
        ]),
    ];
    let seen = t(generate::seen_last_update());
    let later = t("2024-01-15 10:25:00");
    for (i, c) in customers.iter().enumerate() {
        let (address, last_update) = if i < conflicted {
            (format!("{}A座", c.std_address), later.clone())
        } else {
            (c.raw_address.clone(), seen.clone())
        };
        rows.push(json!([
            c.id,
            c.name,
            address,
            c.id_card,
            c.phone,
            c.quality_score,
            last_update
        ]));
    }
    for chunk in rows.chunks(5_000) {
        sqlx::query(
            "INSERT INTO customer_profile (customer_id, name, address, id_card, phone, quality_score, last_update, version) \
             SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4, j.value->>5, j.value->>6, 0 \
             FROM json_each(?1) AS j",
        )
        .bind(Value::Array(chunk.to_vec()).to_string())
        .execute(pool)
        .await?;
    }
    Ok(())
}
