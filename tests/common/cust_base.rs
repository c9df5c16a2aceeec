//! A business table that is not govsync's dev table (issue 14): shaped
//! like a bank's CRM.CUST_BASE, with other names, no version column, the
//! review flag as CHAR(1) 'Y'/'N', the score as NUMERIC(3,2) and the times
//! as TIMESTAMP without a zone in +08:00. Shared by the sink suite and the
//! crash tests.

use govsync::config::RawConfig;

/// The table on PostgreSQL.
pub const PG_DDL: &str = "CREATE TABLE cust_base (
    cust_no      VARCHAR(32) PRIMARY KEY,
    cust_nm      VARCHAR(100),
    addr_line    VARCHAR(200),
    geo_y        DOUBLE PRECISION,
    geo_x        DOUBLE PRECISION,
    geo_prec     VARCHAR(32),
    id_no        VARCHAR(18),
    mobile_no    VARCHAR(20),
    carrier_json TEXT,
    data_qlty    NUMERIC(3,2),
    chk_status   VARCHAR(32),
    review_ind   CHAR(1) CHECK (review_ind IN ('Y', 'N')),
    review_lvl   VARCHAR(16),
    gov_ts       TIMESTAMP(6),
    upd_ts       TIMESTAMP(0)
)";

/// `database.mapping` for `cust_base` (names in upper case, as a DBA
/// writes them; the catalog has them in lower case).
pub fn mapping(mut raw: RawConfig) -> RawConfig {
    raw.database.target_table = "cust_base".into();
    let m = &mut raw.database.mapping;
    m.key = "CUST_NO".into();
    m.name = "CUST_NM".into();
    m.version = String::new();
    m.last_update = "UPD_TS".into();
    m.zone = "+08:00".into();
    m.columns = [
        ("address", "ADDR_LINE"),
        ("geo_lat", "GEO_Y"),
        ("geo_lon", "GEO_X"),
        ("geo_accuracy", "GEO_PREC"),
        ("id_card", "ID_NO"),
        ("phone", "MOBILE_NO"),
        ("carrier_info", "CARRIER_JSON"),
        ("quality_score", "DATA_QLTY"),
        ("validation_status", "CHK_STATUS"),
        ("review_flag", "REVIEW_IND"),
        ("review_priority", "REVIEW_LVL"),
        ("last_governance_time", "GOV_TS"),
    ]
    .into_iter()
    .map(|(f, c)| (f.to_string(), c.to_string()))
    .collect();
    raw
}

/// Copies the dev table's seeded rows into `cust_base` (PostgreSQL), the
/// business side's encodings applied here.
pub async fn copy_from_dev(pg: &sqlx::PgPool) {
    sqlx::query(
        "INSERT INTO cust_base (cust_no, cust_nm, addr_line, id_no, mobile_no, data_qlty, review_ind, upd_ts) \
         SELECT customer_id, name, address, id_card, phone, quality_score, \
         CASE WHEN review_flag THEN 'Y' WHEN NOT review_flag THEN 'N' END, \
         (last_update AT TIME ZONE INTERVAL '+08:00') FROM customer_profile",
    )
    .execute(pg)
    .await
    .unwrap();
}

/// The columns the exactly-once check compares, under govsync's logical
/// names, decoded here (the version is govsync's count).
pub const PG_MODEL_ROWS: &str = "SELECT c.cust_no AS customer_id, coalesce(s.version, 0) AS version, \
    c.addr_line AS address, c.mobile_no AS phone, c.chk_status AS validation_status, \
    c.data_qlty::float8 AS quality_score, \
    CASE c.review_ind WHEN 'Y' THEN true WHEN 'N' THEN false END AS review_flag \
    FROM cust_base c LEFT JOIN govsync_row_state s ON s.customer_id = c.cust_no";
