//! Fixtures shared by the unit tests of the Oracle sink's files: a sample
//! partition and row write, the dev table and a bank's CUST_BASE as the
//! dictionary describes them with their SQL texts, and a placeholder
//! parser.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::catalog::{ColumnRow, sql_type};
use super::sql::Sql;
use crate::config::TableMapping;
use crate::event::Row;
use crate::sink::PartitionKey;
use crate::sink::plan::RowWrite;
use crate::sink::table::{Catalog, CatalogColumn, TableMap, resolve};

/// The placeholders of a SQL text, in order of appearance.
pub(super) fn placeholders(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_quote = false;
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => in_quote = !in_quote,
            b':' if !in_quote => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                out.push(sql[start..end].to_string());
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

pub(super) fn key() -> PartitionKey {
    PartitionKey {
        group: "g".into(),
        topic: "governance.results".into(),
        partition: 3,
    }
}

pub(super) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn write(id: &str) -> RowWrite {
    RowWrite {
        customer_id: id.into(),
        name: Some("张三".into()),
        row: Row {
            address: Some("江苏省南京市玄武区中山路123号".into()),
            geo_lat: Some(32.0581),
            geo_lon: Some(118.7969),
            geo_accuracy: Some("building_level".into()),
            id_card: None,
            phone: Some("13812345678".into()),
            carrier_info: Some(r#"{"carrier":"China Mobile"}"#.into()),
            quality_score: Some(0.92),
            validation_status: Some("verified".into()),
            review_flag: Some(true),
            review_priority: None,
            last_governance_time: Some(t("2024-01-15T02:20:00.123456Z")),
            last_update: Some(t("2024-01-10T06:30:00Z")),
            version: 4,
        },
    }
}

/// A row of ALL_TAB_COLUMNS.
pub(super) fn col(
    name: &str,
    data_type: &str,
    char_length: i64,
    precision: Option<i64>,
    scale: Option<i64>,
) -> ColumnRow {
    ColumnRow {
        name: name.into(),
        data_type: data_type.into(),
        char_length: Some(char_length),
        precision,
        scale,
    }
}

/// A catalog as [`super::catalog::read_catalog`] makes it of these rows.
pub(super) fn catalog(rows: &[ColumnRow], unique: &[&str]) -> Catalog {
    Catalog {
        columns: rows
            .iter()
            .map(|c| CatalogColumn {
                name: c.name.clone(),
                ty: sql_type(c),
            })
            .collect(),
        unique: unique.iter().map(|u| u.to_string()).collect(),
    }
}

/// migrations/oracle/dev_0001's CUSTOMER_PROFILE as the dictionary
/// describes it (unquoted names: upper case).
pub(super) fn dev_catalog() -> Catalog {
    let text = |n: &str, len| col(n, "VARCHAR2", len, None, None);
    let double = |n: &str| col(n, "BINARY_DOUBLE", 0, None, None);
    let tstz = |n: &str| col(n, "TIMESTAMP(6) WITH TIME ZONE", 0, None, Some(6));
    catalog(
        &[
            text("CUSTOMER_ID", 64),
            text("NAME", 100),
            text("ADDRESS", 200),
            double("GEO_LAT"),
            double("GEO_LON"),
            text("GEO_ACCURACY", 32),
            text("ID_CARD", 18),
            text("PHONE", 20),
            col("CARRIER_INFO", "CLOB", 0, None, None),
            double("QUALITY_SCORE"),
            text("VALIDATION_STATUS", 32),
            col("REVIEW_FLAG", "NUMBER", 0, Some(1), Some(0)),
            text("REVIEW_PRIORITY", 16),
            tstz("LAST_UPDATE"),
            tstz("LAST_GOVERNANCE_TIME"),
            col("VERSION", "NUMBER", 0, Some(19), Some(0)),
        ],
        &["CUSTOMER_ID"],
    )
}

/// The default mapping resolved on the dev table.
pub(super) fn dev_map() -> TableMap {
    resolve(
        &TableMapping::default(),
        "customer_profile",
        "\"GOVSYNC\".\"CUSTOMER_PROFILE\"".into(),
        Some(&dev_catalog()),
    )
    .expect("the default mapping fits the dev table")
}

pub(super) fn sql() -> Sql {
    Sql::new(Arc::new(dev_map()), Duration::from_millis(2500))
}

/// CRM.CUST_BASE: a bank's customer table with its own names and
/// encodings (REVIEW_IND 'Y'/'N', DATA_QLTY NUMBER(3,2), UPD_TS a DATE in
/// +08:00), no version column.
pub(super) fn cust_base_catalog() -> Catalog {
    catalog(
        &[
            col("CUST_NO", "VARCHAR2", 20, None, None),
            col("ADDR_LINE", "VARCHAR2", 200, None, None),
            col("MOBILE_NO", "VARCHAR2", 20, None, None),
            col("ID_NO", "VARCHAR2", 18, None, None),
            col("DATA_QLTY", "NUMBER", 0, Some(3), Some(2)),
            col("CHK_STATUS", "VARCHAR2", 32, None, None),
            col("REVIEW_IND", "CHAR", 1, None, None),
            col("UPD_TS", "DATE", 0, None, None),
            col("CHK_TS", "DATE", 0, None, None),
        ],
        &["CUST_NO"],
    )
}

/// The mapping of CUST_BASE as an operator writes it (unquoted names).
pub(super) use crate::sink::table::cust_base_mapping;

pub(super) fn cust_base_sql() -> Sql {
    let map = resolve(
        &cust_base_mapping(),
        "CRM.CUST_BASE",
        "\"CRM\".\"CUST_BASE\"".into(),
        Some(&cust_base_catalog()),
    )
    .expect("the CUST_BASE mapping fits");
    Sql::new(Arc::new(map), Duration::from_secs(3))
}
