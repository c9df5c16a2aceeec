//! Every SQL text the Oracle sink sends, and nothing else: the fixed
//! statements, the [`Sql`] texts built once from the target table as mapped
//! ([`TableMap`]) and the lock wait, and the embedded migrations with the
//! statements that track them.
//!
//! The target table's texts read govsync's logical fields whatever the
//! table calls and encodes them (`read_expr`: a number 1/0 for a boolean,
//! BINARY_DOUBLE for a score, UTC for a time) and write logical values in
//! the table's encoding (`write_expr`). Only mapped columns are named.
//!
//! Placeholders are bound by position: [`super::binds`] builds each
//! statement's binds in the order of its placeholders.

use std::sync::Arc;
use std::time::Duration;

use crate::event::Column;
use crate::sink::migrate::Embedded;
use crate::sink::table::{Adapter, Mapped, TableError, TableMap, quote};

/// The id list of the queries that take one: a bound collection.
const IDS: &str = "SELECT /*+ CARDINALITY(ids 1000) */ ids.column_value FROM TABLE(:p_ids) ids";

pub const WATERMARK_READ: &str = "SELECT next_offset FROM govsync_watermark \
    WHERE consumer_group = :p_group AND topic = :p_topic AND partition_id = :p_partition";

/// Creates the watermark row at 0 when it is missing.
pub const WATERMARK_CREATE: &str = "MERGE INTO govsync_watermark w \
    USING (SELECT :p_group AS consumer_group, :p_topic AS topic, :p_partition AS partition_id FROM dual) s \
    ON (w.consumer_group = s.consumer_group AND w.topic = s.topic AND w.partition_id = s.partition_id) \
    WHEN NOT MATCHED THEN INSERT (consumer_group, topic, partition_id, next_offset) \
    VALUES (s.consumer_group, s.topic, s.partition_id, 0)";

pub const WATERMARK_ADVANCE: &str = "UPDATE govsync_watermark \
    SET next_offset = :p_next_offset, batch_id = :p_batch_id, updated_at = SYSTIMESTAMP \
    WHERE consumer_group = :p_group AND topic = :p_topic AND partition_id = :p_partition \
    AND next_offset <= :p_upto";

pub const OUTBOX_READ: &str = "SELECT dest_topic, msg_key, msg_value, headers FROM govsync_outbox \
    WHERE consumer_group = :p_group AND topic = :p_topic AND partition_id = :p_partition \
    AND next_offset > :p_from AND next_offset <= :p_to ORDER BY next_offset, seq";

/// The message columns (BLOBs) come last: a value too long to bind inline is
/// a LONG RAW bind, which must follow the others.
pub const OUTBOX_INSERT: &str = "INSERT INTO govsync_outbox (batch_id, seq, consumer_group, topic, partition_id, \
    next_offset, dest_topic, msg_key, msg_value, headers) VALUES (:p_batch_id, :p_seq, :p_group, :p_topic, \
    :p_partition, :p_next_offset, :p_dest_topic, :p_key, :p_value, :p_headers)";

pub const OUTBOX_PRUNE: &str = "DELETE FROM govsync_outbox \
    WHERE consumer_group = :p_group AND topic = :p_topic AND partition_id = :p_partition AND next_offset <= :p_upto";

pub const CHANGE_LOG_INSERT: &str = "INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, \
    operation, outcome, governed_at, source_partition, source_offset, before_image, after_image) \
    VALUES (:p_batch_id, :p_event_id, :p_customer_id, :p_data_type, :p_operation, :p_outcome, :p_governed_at, \
    :p_partition, :p_offset, :p_before_image, :p_after_image)";

/// The logged results among these event ids, with their governed_at (a
/// duplicate has both the same; the caller compares the times).
pub fn seen_events_sql() -> String {
    format!(
        "SELECT event_id, SYS_EXTRACT_UTC(governed_at) FROM govsync_change_log WHERE event_id IN ({IDS})"
    )
}

pub fn row_states_sql() -> String {
    format!(
        "SELECT customer_id, SYS_EXTRACT_UTC(address_governed_at), SYS_EXTRACT_UTC(id_card_governed_at), \
         SYS_EXTRACT_UTC(phone_governed_at) FROM govsync_row_state WHERE customer_id IN ({IDS})"
    )
}

/// Upserts one row's state (array DML: one execution per batch). A NULL
/// version leaves the stored write count.
pub const ROW_STATE_MERGE: &str = "MERGE INTO govsync_row_state s \
    USING (SELECT :p_customer_id AS customer_id, :p_address AS address_governed_at, \
    :p_id_card AS id_card_governed_at, :p_phone AS phone_governed_at, :p_version AS version FROM dual) n \
    ON (s.customer_id = n.customer_id) \
    WHEN MATCHED THEN UPDATE SET s.address_governed_at = n.address_governed_at, \
    s.id_card_governed_at = n.id_card_governed_at, s.phone_governed_at = n.phone_governed_at, \
    s.version = COALESCE(n.version, s.version) \
    WHEN NOT MATCHED THEN INSERT (customer_id, address_governed_at, id_card_governed_at, phone_governed_at, \
    version) VALUES (n.customer_id, n.address_governed_at, n.id_card_governed_at, n.phone_governed_at, n.version)";

/// Marks the open review items of one customer and data type superseded
/// by an applied result (array DML over the supersessions). Run before the
/// batch's own items are inserted, so it never touches them.
pub const REVIEW_SUPERSEDE: &str = "UPDATE govsync_review_item SET status = 'superseded', superseded_by = :p_by \
    WHERE status = 'open' AND customer_id = :p_customer_id AND data_type = :p_data_type";

/// The review items among these event ids (those already there are left
/// alone: the insert leaves them out).
pub fn review_items_present_sql() -> String {
    format!("SELECT event_id FROM govsync_review_item WHERE event_id IN ({IDS})")
}

/// One review item (array DML). A plain INSERT, not a MERGE: a JSON text
/// too long for an inline bind is a LONG bind, which Oracle takes in an
/// INSERT's VALUES but not in a MERGE's source query (ORA-01461); the
/// items already there are left out beforehand
/// ([`review_items_present_sql`]). The CLOBs bind last.
pub const REVIEW_ITEM_INSERT: &str = "INSERT INTO govsync_review_item (event_id, batch_id, customer_id, \
    data_type, region_code, reason, priority, row_version, governed_at, status, superseded_by, details, \
    proposed, current_row) VALUES (:p_event_id, :p_batch_id, :p_customer_id, :p_data_type, :p_region_code, \
    :p_reason, :p_priority, :p_row_version, :p_governed_at, :p_status, :p_superseded_by, :p_details, \
    :p_proposed, :p_current_row)";

/// Review items, oldest first, of one status or all (a NULL status).
/// The open review items by priority and region, for the review metrics.
pub const OPEN_REVIEWS: &str = "SELECT priority, region_code, COUNT(*), SYS_EXTRACT_UTC(MIN(created_at)) \
    FROM govsync_review_item WHERE status = 'open' GROUP BY priority, region_code";

/// Retention: what was logged before the horizon.
pub const CHANGE_LOG_PRUNE: &str = "DELETE FROM govsync_change_log WHERE logged_at < :p_horizon";

pub const BATCH_LOG_READ: &str = "SELECT event_id, customer_id, data_type, operation, before_image, after_image \
    FROM govsync_change_log WHERE batch_id = :p_batch_id AND outcome IN ('applied', 'flagged') ORDER BY id";

pub const LEDGER_INSERT: &str = "INSERT INTO govsync_batch (batch_id, kind, consumer_group, topic, partition_id, \
    first_offset, last_offset, records, counts, started_at, duration_ms, attempts, status) VALUES (:p_batch_id, \
    :p_kind, :p_group, :p_topic, :p_partition, :p_first_offset, :p_last_offset, :p_records, :p_counts, \
    :p_started_at, :p_duration_ms, :p_attempts, :p_status)";

pub const BATCH_STATUS_SET: &str =
    "UPDATE govsync_batch SET status = :p_status WHERE batch_id = :p_batch_id";

/// `govsync batches`: every filter is optional (a NULL bind disables it).
pub const BATCHES_LIST: &str = "SELECT batch_id, kind, consumer_group, topic, partition_id, first_offset, \
    last_offset, records, counts, SYS_EXTRACT_UTC(started_at), duration_ms, attempts, status FROM govsync_batch \
    WHERE (:p_topic IS NULL OR topic = :p_topic_eq) AND (:p_partition IS NULL OR partition_id = :p_partition_eq) \
    AND (:p_status IS NULL OR status = :p_status_eq) AND (:p_since IS NULL OR started_at >= :p_since_ge) \
    AND (:p_batch_id IS NULL OR batch_id = :p_batch_id_eq) \
    ORDER BY started_at DESC, batch_id FETCH FIRST :p_limit ROWS ONLY";

pub const SAVEPOINT: &str = "SAVEPOINT govsync_write";
pub const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT govsync_write";

/// A column a row read returns after the key, decoded into a logical
/// field by `exec::row_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Field(Column, Adapter),
    LastUpdate(Adapter),
    /// The table's version column, or govsync's count
    /// (`govsync_row_state.version`, 0 where there is none).
    Version,
}

/// A value an UPDATE sets and an INSERT fills, in the statements' order
/// (the binds of [`super::binds`] follow the same list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The column, quoted.
    pub column: String,
    /// Its placeholder, without `:`.
    pub placeholder: &'static str,
    /// The expression the column is set to: the placeholder, or the
    /// adapter's conversion of it.
    pub value: String,
    pub source: Source,
}

/// Where a written value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Field(Column, Adapter),
    Version,
}

/// Whether a field's value is bound in the CLOB way (inline when short, a
/// LONG bind when long), so its column comes last in the UPDATE's SET and
/// the INSERT's VALUES. carrier_info is the one field whose values can be
/// long (a JSON object); the others are short by nature and bound as
/// VARCHAR2 (a time as RFC 3339 text included).
pub fn binds_long(c: Column, a: Adapter) -> bool {
    c == Column::CarrierInfo && a == Adapter::Text
}

/// A field's placeholder.
pub fn placeholder(c: Column) -> &'static str {
    match c {
        Column::Address => "p_address",
        Column::GeoLat => "p_geo_lat",
        Column::GeoLon => "p_geo_lon",
        Column::GeoAccuracy => "p_geo_accuracy",
        Column::IdCard => "p_id_card",
        Column::Phone => "p_phone",
        Column::CarrierInfo => "p_carrier_info",
        Column::QualityScore => "p_quality_score",
        Column::ValidationStatus => "p_validation_status",
        Column::ReviewFlag => "p_review_flag",
        Column::ReviewPriority => "p_review_priority",
        Column::LastGovernanceTime => "p_last_governance_time",
    }
}

/// Column `col` (qualified) read as its logical value, of the Oracle type
/// `exec::row_from` fetches for the adapter: text, BINARY_DOUBLE, a number
/// 1/0 for a boolean, a TIMESTAMP in UTC for a time (text for RFC 3339
/// text). BOOLEAN (23ai SQL) is refused at start-up ([`unsupported`]).
fn read_expr(col: &str, adapter: Adapter, zone: &str) -> String {
    match adapter {
        Adapter::Text | Adapter::Float | Adapter::BoolNumber | Adapter::Integer => col.to_string(),
        Adapter::TimeText => col.to_string(),
        Adapter::Decimal { .. } => format!("TO_BINARY_DOUBLE({col})"),
        Adapter::Bool => format!("CASE WHEN {col} THEN 1 WHEN NOT {col} THEN 0 END"),
        Adapter::BoolYn => format!("CASE {col} WHEN 'Y' THEN 1 WHEN 'N' THEN 0 END"),
        Adapter::TimeTz { .. } => format!("SYS_EXTRACT_UTC({col})"),
        Adapter::TimeLocal { .. } => {
            format!("SYS_EXTRACT_UTC(FROM_TZ(CAST({col} AS TIMESTAMP(9)), '{zone}'))")
        }
    }
}

/// The bound logical value `p` (a placeholder, `:p_…`) as the column
/// stores it. Binds carry logical values: a boolean as 1/0, a time as
/// TIMESTAMP WITH TIME ZONE in UTC, a score as BINARY_DOUBLE (a NUMBER
/// column converts it; the plan rounded it to the column's scale), a time
/// for a text column as RFC 3339 text.
fn write_expr(p: &str, adapter: Adapter, zone: &str) -> String {
    match adapter {
        Adapter::BoolYn => format!("CASE {p} WHEN 1 THEN 'Y' WHEN 0 THEN 'N' END"),
        Adapter::Bool => format!("CASE {p} WHEN 1 THEN TRUE WHEN 0 THEN FALSE END"),
        // Local wall time in the zone; a DATE keeps the second (the plan
        // cut the fraction already).
        Adapter::TimeLocal { digits: 0 } => format!("CAST(({p} AT TIME ZONE '{zone}') AS DATE)"),
        Adapter::TimeLocal { digits } => {
            format!("CAST(({p} AT TIME ZONE '{zone}') AS TIMESTAMP({digits}))")
        }
        _ => p.to_string(),
    }
}

/// The columns a row read returns after the key, in order: the mapped
/// fields, the last update where mapped, the version.
fn reads(map: &TableMap) -> Vec<Read> {
    let mut reads: Vec<Read> = map
        .mapped()
        .map(|(c, m)| Read::Field(c, m.adapter))
        .collect();
    if let Some(m) = &map.last_update {
        reads.push(Read::LastUpdate(m.adapter));
    }
    reads.push(Read::Version);
    reads
}

/// The written columns in order: the mapped fields, the version where the
/// table has one, and last the fields bound the CLOB way ([`binds_long`]).
fn written(map: &TableMap) -> Vec<Written> {
    let zone = map.zone.to_string();
    let field = |(c, m): (Column, &Mapped)| {
        let p = placeholder(c);
        Written {
            column: m.quoted(),
            placeholder: p,
            value: write_expr(&format!(":{p}"), m.adapter, &zone),
            source: Source::Field(c, m.adapter),
        }
    };
    let mut out: Vec<Written> = map
        .mapped()
        .filter(|(c, m)| !binds_long(*c, m.adapter))
        .map(field)
        .collect();
    if let Some(v) = &map.version {
        out.push(Written {
            column: quote(v),
            placeholder: "p_version",
            value: ":p_version".into(),
            source: Source::Version,
        });
    }
    out.extend(
        map.mapped()
            .filter(|(c, m)| binds_long(*c, m.adapter))
            .map(field),
    );
    out
}

/// What the Oracle sink does not write although [`resolve`] accepts it,
/// each with its fix (`None`: all fits).
///
/// [`resolve`]: crate::sink::table::resolve
pub fn unsupported(map: &TableMap, table: &str) -> Option<TableError> {
    let problems: Vec<String> = map
        .mapped()
        .filter(|(_, m)| m.adapter == Adapter::Bool)
        .map(|(c, m)| {
            format!(
                "database.mapping.columns.{c} = \"{col}\": column {col} is BOOLEAN (Oracle 23ai), which \
                 govsync's Oracle sink does not write; map a NUMBER(1) column (1/0) or a CHAR(1) column \
                 ('Y'/'N'), or set it to \"\"",
                col = m.column
            )
        })
        .collect();
    (!problems.is_empty()).then(|| TableError {
        table: table.to_string(),
        problems,
    })
}

/// SQL texts that depend on the config (the target table as mapped, the
/// lock wait), built once.
#[derive(Debug)]
pub struct Sql {
    /// The target table as mapped.
    pub map: Arc<TableMap>,
    /// What [`Sql::lock_rows`] and [`Sql::read_rows`] return after the key.
    pub reads: Vec<Read>,
    /// What [`Sql::update_rows`] sets and [`Sql::insert_rows`] fills (after
    /// the key and the name).
    pub written: Vec<Written>,
    pub watermark_lock: String,
    pub lock_rows: String,
    pub read_rows: String,
    pub update_rows: String,
    pub insert_rows: String,
    pub delete_rows: String,
    pub seen_events: String,
    pub row_states: String,
    pub review_items_present: String,
    pub batch_status_lock: String,
    /// A review item locked for its decision ([`super::review::item_lock_sql`]).
    pub item_lock: String,
}

impl Sql {
    /// `map` is the target table resolved against its catalog (names in
    /// the catalog's spelling, quoted here); `lock_wait` bounds every
    /// row-lock wait (whole seconds, at least 1).
    pub fn new(map: Arc<TableMap>, lock_wait: Duration) -> Self {
        let wait = lock_wait_secs(lock_wait);
        let table = &map.table;
        let key = map.key_quoted();
        let zone = map.zone.to_string();
        let reads = reads(&map);
        let mut select = vec![format!("c.{key}")];
        // A table without a version column: govsync's count of its writes.
        let mut join = String::new();
        for r in &reads {
            select.push(match *r {
                Read::Field(c, adapter) => {
                    let m = map.field(c).expect("a read field is mapped");
                    read_expr(&format!("c.{}", m.quoted()), adapter, &zone)
                }
                Read::LastUpdate(adapter) => {
                    let m = map.last_update.as_ref().expect("last_update is mapped");
                    read_expr(&format!("c.{}", m.quoted()), adapter, &zone)
                }
                Read::Version => match &map.version {
                    Some(v) => format!("c.{}", quote(v)),
                    None => {
                        join = format!(" LEFT JOIN govsync_row_state s ON s.customer_id = c.{key}");
                        "NVL(s.version, 0)".into()
                    }
                },
            });
        }
        let select_rows = format!(
            "SELECT {} FROM {table} c{join} WHERE c.{key} IN ({IDS})",
            select.join(", ")
        );
        let written = written(&map);
        let mut set: Vec<String> = written
            .iter()
            .map(|w| format!("{} = {}", w.column, w.value))
            .collect();
        if set.is_empty() {
            // Nothing mapped: no update is ever planned; the text stays valid.
            set.push(format!("{key} = {key}"));
        }
        let mut columns = vec![key.clone()];
        let mut values = vec![":p_customer_id".to_string()];
        if let Some(n) = &map.name {
            columns.push(quote(n));
            values.push(":p_name".into());
        }
        for w in &written {
            columns.push(w.column.clone());
            values.push(w.value.clone());
        }
        Sql {
            watermark_lock: format!("{WATERMARK_READ} FOR UPDATE WAIT {wait}"),
            // Locked in key order; only the target table's rows (not their
            // states) are locked.
            lock_rows: format!("{select_rows} ORDER BY c.{key} FOR UPDATE OF c.{key} WAIT {wait}"),
            read_rows: select_rows,
            update_rows: format!(
                "UPDATE {table} SET {} WHERE {key} = :p_customer_id",
                set.join(", ")
            ),
            insert_rows: format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                columns.join(", "),
                values.join(", ")
            ),
            delete_rows: format!("DELETE FROM {table} WHERE {key} = :p_customer_id"),
            seen_events: seen_events_sql(),
            row_states: row_states_sql(),
            review_items_present: review_items_present_sql(),
            batch_status_lock: format!(
                "SELECT status FROM govsync_batch WHERE batch_id = :p_batch_id FOR UPDATE WAIT {wait}"
            ),
            item_lock: super::review::item_lock_sql(wait),
            reads,
            written,
            map,
        }
    }
}

/// `FOR UPDATE WAIT n` takes whole seconds; round up, at least 1.
pub fn lock_wait_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

pub const MIGRATIONS: &[Embedded] = &[
    (
        1,
        "govsync tables",
        include_str!("../../../migrations/oracle/0001_govsync_tables.sql"),
    ),
    (
        2,
        "lean batches",
        include_str!("../../../migrations/oracle/0002_lean_batches.sql"),
    ),
    (
        3,
        "row version",
        include_str!("../../../migrations/oracle/0003_row_version.sql"),
    ),
    (
        4,
        "review items",
        include_str!("../../../migrations/oracle/0004_review_items.sql"),
    ),
    (
        5,
        "review decisions",
        include_str!("../../../migrations/oracle/0005_review_decisions.sql"),
    ),
];
pub const DEV_MIGRATIONS: &[Embedded] = &[(
    1,
    "customer_profile (dev)",
    include_str!("../../../migrations/oracle/dev_0001_customer_profile.sql"),
)];

pub const MIGRATIONS_TABLE: &str = "CREATE TABLE govsync_migrations (\
    set_name VARCHAR2(16 CHAR) NOT NULL, version NUMBER(10) NOT NULL, description VARCHAR2(200 CHAR) NOT NULL, \
    checksum VARCHAR2(16 CHAR) NOT NULL, applied_at TIMESTAMP(6) WITH TIME ZONE DEFAULT SYSTIMESTAMP NOT NULL, \
    CONSTRAINT govsync_migrations_pk PRIMARY KEY (set_name, version))";
pub const MIGRATION_READ: &str =
    "SELECT checksum FROM govsync_migrations WHERE set_name = :p_set AND version = :p_version";
pub const MIGRATION_RECORD: &str = "INSERT INTO govsync_migrations (set_name, version, description, checksum) \
    VALUES (:p_set, :p_version, :p_description, :p_checksum)";

#[cfg(test)]
mod tests {
    use super::super::fixtures::{
        catalog, col, cust_base_catalog, cust_base_mapping, cust_base_sql, dev_map, placeholders,
        sql,
    };
    use super::*;
    use crate::config::TableMapping;
    use crate::sink::table::resolve;

    /// The items of a SELECT's list (split at top-level commas).
    fn select_items(sql: &str) -> Vec<String> {
        let list = &sql["SELECT ".len()..sql.find(" FROM ").unwrap()];
        let (mut items, mut cur, mut depth) = (Vec::new(), String::new(), 0);
        for ch in list.chars() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(cur.trim().to_string());
                    cur.clear();
                    continue;
                }
                _ => {}
            }
            cur.push(ch);
        }
        items.push(cur.trim().to_string());
        items
    }

    #[test]
    fn statement_texts() {
        let sql = sql();
        assert_eq!(
            sql.watermark_lock,
            "SELECT next_offset FROM govsync_watermark WHERE consumer_group = :p_group AND topic = :p_topic \
             AND partition_id = :p_partition FOR UPDATE WAIT 3"
        );
        assert!(
            sql.lock_rows.starts_with(
                "SELECT c.\"CUSTOMER_ID\", c.\"ADDRESS\", c.\"GEO_LAT\", c.\"GEO_LON\", c.\"GEO_ACCURACY\", \
                 c.\"ID_CARD\", c.\"PHONE\", c.\"CARRIER_INFO\", c.\"QUALITY_SCORE\", c.\"VALIDATION_STATUS\", \
                 c.\"REVIEW_FLAG\", c.\"REVIEW_PRIORITY\", SYS_EXTRACT_UTC(c.\"LAST_GOVERNANCE_TIME\"), \
                 SYS_EXTRACT_UTC(c.\"LAST_UPDATE\"), c.\"VERSION\" FROM \"GOVSYNC\".\"CUSTOMER_PROFILE\" c \
                 WHERE c.\"CUSTOMER_ID\" IN (SELECT"
            ),
            "{}",
            sql.lock_rows
        );
        assert!(sql.lock_rows.contains("TABLE(:p_ids)"));
        assert!(
            sql.lock_rows
                .ends_with("ORDER BY c.\"CUSTOMER_ID\" FOR UPDATE OF c.\"CUSTOMER_ID\" WAIT 3"),
            "{}",
            sql.lock_rows
        );
        // The table keeps its own version: no join to govsync's count.
        assert!(!sql.lock_rows.contains("govsync_row_state"));
        assert!(!sql.read_rows.contains("FOR UPDATE"));
        assert!(
            sql.update_rows.starts_with(
                "UPDATE \"GOVSYNC\".\"CUSTOMER_PROFILE\" SET \"ADDRESS\" = :p_address, "
            )
        );
        assert!(
            sql.update_rows.ends_with(
                "\"VERSION\" = :p_version, \"CARRIER_INFO\" = :p_carrier_info \
                 WHERE \"CUSTOMER_ID\" = :p_customer_id"
            ),
            "{}",
            sql.update_rows
        );
        assert!(
            sql.insert_rows.starts_with(
                "INSERT INTO \"GOVSYNC\".\"CUSTOMER_PROFILE\" (\"CUSTOMER_ID\", \"NAME\", \"ADDRESS\", "
            ),
            "{}",
            sql.insert_rows
        );
        assert!(sql.insert_rows.ends_with(":p_version, :p_carrier_info)"));
        assert_eq!(
            sql.delete_rows,
            "DELETE FROM \"GOVSYNC\".\"CUSTOMER_PROFILE\" WHERE \"CUSTOMER_ID\" = :p_customer_id"
        );
        assert!(WATERMARK_CREATE.starts_with("MERGE INTO govsync_watermark w USING (SELECT"));
        assert!(WATERMARK_CREATE.contains("WHEN NOT MATCHED THEN INSERT"));
        assert!(!WATERMARK_CREATE.contains("WHEN MATCHED"));
        assert!(sql.batch_status_lock.ends_with("FOR UPDATE WAIT 3"));
        assert!(BATCHES_LIST.ends_with("FETCH FIRST :p_limit ROWS ONLY"));
        assert_eq!(SAVEPOINT, "SAVEPOINT govsync_write");
        assert_eq!(ROLLBACK_TO_SAVEPOINT, "ROLLBACK TO SAVEPOINT govsync_write");
        // Statements run through OCI carry no terminator.
        for text in [
            &sql.watermark_lock,
            &sql.lock_rows,
            &sql.read_rows,
            &sql.update_rows,
            &sql.insert_rows,
            &sql.delete_rows,
            &sql.seen_events,
            &sql.row_states,
            &sql.review_items_present,
            &sql.batch_status_lock,
        ] {
            assert!(!text.trim_end().ends_with(';'), "{text}");
        }
    }

    /// Oracle folds the dev table's unquoted names to upper case; the
    /// default mapping (govsync's lower-case names) finds them all.
    #[test]
    fn the_default_mapping_resolves_on_the_dev_table() {
        let map = dev_map();
        assert_eq!(map.key, "CUSTOMER_ID");
        assert_eq!(map.name.as_deref(), Some("NAME"));
        assert_eq!(map.version.as_deref(), Some("VERSION"));
        for c in Column::ALL {
            let m = map.field(c).unwrap();
            assert_eq!(m.column, c.name().to_uppercase());
            let want = match c {
                Column::GeoLat | Column::GeoLon | Column::QualityScore => Adapter::Float,
                Column::ReviewFlag => Adapter::BoolNumber,
                Column::LastGovernanceTime => Adapter::TimeTz { digits: 6 },
                _ => Adapter::Text,
            };
            assert_eq!(m.adapter, want, "{c}");
        }
        assert_eq!(
            map.last_update.as_ref().unwrap().adapter,
            Adapter::TimeTz { digits: 6 }
        );
    }

    /// CRM.CUST_BASE: only its mapped columns, in its own spelling, with
    /// the Y/N, NUMBER and DATE conversions; the version is govsync's.
    #[test]
    fn a_bank_table_gets_statements_in_its_own_names_and_encodings() {
        let sql = cust_base_sql();
        let ids = "SELECT /*+ CARDINALITY(ids 1000) */ ids.column_value FROM TABLE(:p_ids) ids";
        assert_eq!(
            sql.read_rows,
            format!(
                "SELECT c.\"CUST_NO\", c.\"ADDR_LINE\", c.\"ID_NO\", c.\"MOBILE_NO\", \
                 TO_BINARY_DOUBLE(c.\"DATA_QLTY\"), c.\"CHK_STATUS\", \
                 CASE c.\"REVIEW_IND\" WHEN 'Y' THEN 1 WHEN 'N' THEN 0 END, \
                 SYS_EXTRACT_UTC(FROM_TZ(CAST(c.\"UPD_TS\" AS TIMESTAMP(9)), '+08:00')), NVL(s.version, 0) \
                 FROM \"CRM\".\"CUST_BASE\" c LEFT JOIN govsync_row_state s ON s.customer_id = c.\"CUST_NO\" \
                 WHERE c.\"CUST_NO\" IN ({ids})"
            )
        );
        assert_eq!(
            sql.lock_rows,
            format!(
                "{} ORDER BY c.\"CUST_NO\" FOR UPDATE OF c.\"CUST_NO\" WAIT 3",
                sql.read_rows
            )
        );
        assert_eq!(
            sql.update_rows,
            "UPDATE \"CRM\".\"CUST_BASE\" SET \"ADDR_LINE\" = :p_address, \"ID_NO\" = :p_id_card, \
             \"MOBILE_NO\" = :p_phone, \"DATA_QLTY\" = :p_quality_score, \
             \"CHK_STATUS\" = :p_validation_status, \
             \"REVIEW_IND\" = CASE :p_review_flag WHEN 1 THEN 'Y' WHEN 0 THEN 'N' END \
             WHERE \"CUST_NO\" = :p_customer_id"
        );
        assert_eq!(
            sql.insert_rows,
            "INSERT INTO \"CRM\".\"CUST_BASE\" (\"CUST_NO\", \"ADDR_LINE\", \"ID_NO\", \"MOBILE_NO\", \
             \"DATA_QLTY\", \"CHK_STATUS\", \"REVIEW_IND\") VALUES (:p_customer_id, :p_address, :p_id_card, \
             :p_phone, :p_quality_score, :p_validation_status, \
             CASE :p_review_flag WHEN 1 THEN 'Y' WHEN 0 THEN 'N' END)"
        );
        assert_eq!(
            sql.delete_rows,
            "DELETE FROM \"CRM\".\"CUST_BASE\" WHERE \"CUST_NO\" = :p_customer_id"
        );
        // Nothing of the dev table, no column the mapping leaves out, and
        // never the business's last-update time or a version written.
        for text in [
            &sql.lock_rows,
            &sql.read_rows,
            &sql.update_rows,
            &sql.insert_rows,
            &sql.delete_rows,
        ] {
            assert!(!text.contains("customer_profile"), "{text}");
            assert!(!text.contains("CHK_TS"), "{text}");
            assert!(!text.contains("\"customer_id\""), "{text}");
        }
        for text in [&sql.update_rows, &sql.insert_rows] {
            assert!(!text.contains("UPD_TS"), "{text}");
            assert!(!text.contains("version"), "{text}");
        }
        assert_eq!(
            sql.reads,
            [
                Read::Field(Column::Address, Adapter::Text),
                Read::Field(Column::IdCard, Adapter::Text),
                Read::Field(Column::Phone, Adapter::Text),
                Read::Field(Column::QualityScore, Adapter::Decimal { scale: 2 }),
                Read::Field(Column::ValidationStatus, Adapter::Text),
                Read::Field(Column::ReviewFlag, Adapter::BoolYn),
                Read::LastUpdate(Adapter::TimeLocal { digits: 0 }),
                Read::Version,
            ]
        );
    }

    /// `row_from` decodes by position: the key, then one item per read.
    #[test]
    fn the_select_list_is_the_key_and_the_reads() {
        for sql in [sql(), cust_base_sql()] {
            for text in [&sql.lock_rows, &sql.read_rows] {
                assert_eq!(
                    select_items(text).len(),
                    1 + sql.reads.len(),
                    "{:?}",
                    select_items(text)
                );
            }
        }
        assert_eq!(
            select_items("SELECT a, f(b, 'x'), CASE c WHEN 1 THEN 2 END FROM t"),
            ["a", "f(b, 'x')", "CASE c WHEN 1 THEN 2 END"]
        );
    }

    #[test]
    fn times_without_a_zone_are_local_time_in_the_mapping_zone() {
        let mut cat = cust_base_catalog();
        cat.columns
            .extend(catalog(&[col("CHK_TS3", "TIMESTAMP(3)", 0, None, Some(3))], &[]).columns);
        let mut m = cust_base_mapping();
        m.columns
            .insert(Column::LastGovernanceTime, "chk_ts".into());
        let sql = |m: &TableMapping| {
            let map = resolve(
                m,
                "CRM.CUST_BASE",
                "\"CRM\".\"CUST_BASE\"".into(),
                Some(&cat),
            )
            .unwrap();
            Sql::new(Arc::new(map), Duration::from_secs(3))
        };
        let date = sql(&m);
        assert!(
            date.update_rows.contains(
                "\"CHK_TS\" = CAST((:p_last_governance_time AT TIME ZONE '+08:00') AS DATE)"
            ),
            "{}",
            date.update_rows
        );
        assert!(
            date.insert_rows
                .contains("CAST((:p_last_governance_time AT TIME ZONE '+08:00') AS DATE)")
        );
        assert!(
            date.read_rows
                .contains("SYS_EXTRACT_UTC(FROM_TZ(CAST(c.\"CHK_TS\" AS TIMESTAMP(9)), '+08:00'))")
        );
        m.columns
            .insert(Column::LastGovernanceTime, "chk_ts3".into());
        m.zone = chrono::FixedOffset::west_opt(5 * 3600).unwrap();
        let ts = sql(&m);
        assert!(
            ts.update_rows.contains(
                "\"CHK_TS3\" = CAST((:p_last_governance_time AT TIME ZONE '-05:00') AS TIMESTAMP(3))"
            ),
            "{}",
            ts.update_rows
        );
        assert!(ts.read_rows.contains("'-05:00'"));
    }

    #[test]
    fn a_boolean_column_is_refused_with_the_fix() {
        let mut cat = cust_base_catalog();
        cat.columns
            .extend(catalog(&[col("REVIEW_B", "BOOLEAN", 0, None, None)], &[]).columns);
        let mut m = cust_base_mapping();
        m.columns.insert(Column::ReviewFlag, "review_b".into());
        let map = resolve(&m, "CRM.CUST_BASE", "x".into(), Some(&cat)).unwrap();
        let e = unsupported(&map, "CRM.CUST_BASE").unwrap().to_string();
        assert!(
            e.contains("database.mapping.columns.review_flag = \"REVIEW_B\""),
            "{e}"
        );
        assert!(
            e.contains("BOOLEAN") && e.contains("NUMBER(1)") && e.contains("CHAR(1)"),
            "{e}"
        );
        assert!(unsupported(&dev_map(), "customer_profile").is_none());
        assert!(unsupported(cust_base_sql().map.as_ref(), "CRM.CUST_BASE").is_none());
    }

    #[test]
    fn lock_wait_rounds_up_to_whole_seconds() {
        assert_eq!(lock_wait_secs(Duration::from_millis(1)), 1);
        assert_eq!(lock_wait_secs(Duration::from_millis(1000)), 1);
        assert_eq!(lock_wait_secs(Duration::from_millis(1001)), 2);
        assert_eq!(lock_wait_secs(Duration::from_secs(10)), 10);
        let sql = Sql::new(Arc::new(dev_map()), Duration::from_secs(10));
        assert!(sql.lock_rows.ends_with("WAIT 10"));
    }

    #[test]
    fn id_list_queries_bind_one_collection() {
        for sql in [sql(), cust_base_sql()] {
            for text in [
                &sql.lock_rows,
                &sql.read_rows,
                &sql.seen_events,
                &sql.row_states,
                &sql.review_items_present,
            ] {
                assert_eq!(placeholders(text), ["p_ids"], "{text}");
            }
        }
        let sql = sql();
        assert!(sql.row_states.contains("FROM govsync_row_state"));
        assert!(ROW_STATE_MERGE.contains("WHEN NOT MATCHED THEN INSERT"));
    }

    /// govsync's write count: a NULL leaves the stored one.
    #[test]
    fn the_row_state_merge_keeps_the_count_unless_given() {
        assert!(ROW_STATE_MERGE.contains(":p_version AS version"));
        assert!(ROW_STATE_MERGE.contains("s.version = COALESCE(n.version, s.version)"));
        assert!(ROW_STATE_MERGE.ends_with("n.phone_governed_at, n.version)"));
    }

    /// Review items: the supersession reaches only open items of one
    /// customer and data type; the insert is a plain INSERT (LONG binds)
    /// with the CLOB columns last; the list filters on an optional status.
    #[test]
    fn review_item_statements() {
        assert_eq!(
            REVIEW_SUPERSEDE,
            "UPDATE govsync_review_item SET status = 'superseded', superseded_by = :p_by \
             WHERE status = 'open' AND customer_id = :p_customer_id AND data_type = :p_data_type"
        );
        assert!(REVIEW_ITEM_INSERT.starts_with("INSERT INTO govsync_review_item ("));
        assert!(!REVIEW_ITEM_INSERT.contains("MERGE") && !REVIEW_ITEM_INSERT.contains("dual"));
        // Each column gets the placeholder of its name, in the same order.
        let open = REVIEW_ITEM_INSERT.find('(').unwrap();
        let close = REVIEW_ITEM_INSERT.find(')').unwrap();
        let columns: Vec<String> = REVIEW_ITEM_INSERT[open + 1..close]
            .split(',')
            .map(|c| format!("p_{}", c.trim()))
            .collect();
        assert_eq!(placeholders(REVIEW_ITEM_INSERT), columns);
        assert!(REVIEW_ITEM_INSERT.ends_with(":p_details, :p_proposed, :p_current_row)"));
        assert_eq!(
            review_items_present_sql(),
            format!("SELECT event_id FROM govsync_review_item WHERE event_id IN ({IDS})")
        );
        for text in [REVIEW_SUPERSEDE, REVIEW_ITEM_INSERT] {
            assert!(!text.trim_end().ends_with(';'), "{text}");
            // "COMMENT" (reserved) is never named unquoted.
            assert!(!text.to_lowercase().contains("comment"), "{text}");
        }
    }

    /// The review items' migration is the fourth, after the row version,
    /// and every migration's version is its position.
    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5]);
        assert_eq!(MIGRATIONS[3].1, "review items");
        assert_eq!(MIGRATIONS[4].1, "review decisions");
        assert!(
            MIGRATIONS[3]
                .2
                .contains("CREATE TABLE govsync_review_item (")
        );
    }
}
