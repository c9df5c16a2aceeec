//! Every SQL text the Oracle sink sends, and nothing else: the fixed
//! statements, the [`Sql`] texts built once from the config (the target
//! table, the lock wait), and the embedded migrations with the statements
//! that track them.
//!
//! Placeholders are bound by position: [`super::binds`] builds each
//! statement's binds in the order of its placeholders.

use std::sync::Arc;
use std::time::Duration;

use crate::sink::migrate::Embedded;
use crate::sink::table::{Adapter, TableMap};

/// The id list of the queries that take one: a bound collection.
const IDS: &str = "SELECT /*+ CARDINALITY(ids 1000) */ ids.column_value FROM TABLE(:p_ids) ids";

/// Columns of the target table read into a [`Row`](crate::event::Row), in
/// [`row_from`](super::exec::row_from)'s order. Times are normalised to UTC
/// in SQL (`SYS_EXTRACT_UTC`), so a business column holding another time
/// zone is read correctly.
const ROW_SELECT: &str = "customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
    quality_score, validation_status, review_flag, review_priority, SYS_EXTRACT_UTC(last_governance_time), \
    SYS_EXTRACT_UTC(last_update), version";

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

/// Upserts one row's state (array DML: one execution per batch).
pub const ROW_STATE_MERGE: &str = "MERGE INTO govsync_row_state s \
    USING (SELECT :p_customer_id AS customer_id, :p_address AS address_governed_at, \
    :p_id_card AS id_card_governed_at, :p_phone AS phone_governed_at FROM dual) n \
    ON (s.customer_id = n.customer_id) \
    WHEN MATCHED THEN UPDATE SET s.address_governed_at = n.address_governed_at, \
    s.id_card_governed_at = n.id_card_governed_at, s.phone_governed_at = n.phone_governed_at \
    WHEN NOT MATCHED THEN INSERT (customer_id, address_governed_at, id_card_governed_at, phone_governed_at) \
    VALUES (n.customer_id, n.address_governed_at, n.id_card_governed_at, n.phone_governed_at)";

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

/// SQL texts that depend on the config (the target table, the lock wait),
/// built once.
#[derive(Debug)]
pub struct Sql {
    /// The target table as mapped.
    pub map: Arc<TableMap>,
    pub watermark_lock: String,
    pub lock_rows: String,
    pub read_rows: String,
    pub update_rows: String,
    pub insert_rows: String,
    pub delete_rows: String,
    pub seen_events: String,
    pub row_states: String,
    pub batch_status_lock: String,
}

impl Sql {
    /// `table` is a checked identifier from the config; `lock_wait` bounds
    /// every row-lock wait (whole seconds, at least 1).
    pub fn new(table: &str, lock_wait: Duration) -> Self {
        let wait = lock_wait_secs(lock_wait);
        Sql {
            map: Arc::new(TableMap::dev(table, Adapter::BoolNumber, Adapter::Float)),
            watermark_lock: format!("{WATERMARK_READ} FOR UPDATE WAIT {wait}"),
            lock_rows: format!(
                "SELECT {ROW_SELECT} FROM {table} WHERE customer_id IN ({IDS}) \
                 ORDER BY customer_id FOR UPDATE WAIT {wait}"
            ),
            read_rows: format!("SELECT {ROW_SELECT} FROM {table} WHERE customer_id IN ({IDS})"),
            // carrier_info (a CLOB) is the last assignment: a long value is
            // a LONG bind, which must follow the other SET binds.
            update_rows: format!(
                "UPDATE {table} SET address = :p_address, geo_lat = :p_geo_lat, geo_lon = :p_geo_lon, \
                 geo_accuracy = :p_geo_accuracy, id_card = :p_id_card, phone = :p_phone, \
                 quality_score = :p_quality_score, validation_status = :p_validation_status, \
                 review_flag = :p_review_flag, review_priority = :p_review_priority, \
                 last_governance_time = :p_last_governance_time, version = :p_version, \
                 carrier_info = :p_carrier_info WHERE customer_id = :p_customer_id"
            ),
            insert_rows: format!(
                "INSERT INTO {table} (customer_id, name, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, \
                 quality_score, validation_status, review_flag, review_priority, last_governance_time, version, \
                 carrier_info) VALUES (:p_customer_id, :p_name, :p_address, :p_geo_lat, :p_geo_lon, \
                 :p_geo_accuracy, :p_id_card, :p_phone, :p_quality_score, :p_validation_status, :p_review_flag, \
                 :p_review_priority, :p_last_governance_time, :p_version, :p_carrier_info)"
            ),
            delete_rows: format!("DELETE FROM {table} WHERE customer_id = :p_customer_id"),
            seen_events: seen_events_sql(),
            row_states: row_states_sql(),
            batch_status_lock: format!(
                "SELECT status FROM govsync_batch WHERE batch_id = :p_batch_id FOR UPDATE WAIT {wait}"
            ),
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
    use super::super::fixtures::{placeholders, sql};
    use super::*;

    #[test]
    fn statement_texts() {
        let sql = sql();
        assert_eq!(
            sql.watermark_lock,
            "SELECT next_offset FROM govsync_watermark WHERE consumer_group = :p_group AND topic = :p_topic \
             AND partition_id = :p_partition FOR UPDATE WAIT 3"
        );
        assert!(sql.lock_rows.starts_with(
            "SELECT customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
             quality_score, validation_status, review_flag, review_priority, SYS_EXTRACT_UTC(last_governance_time), \
             SYS_EXTRACT_UTC(last_update), version FROM customer_profile WHERE customer_id IN (SELECT"
        ));
        assert!(sql.lock_rows.contains("TABLE(:p_ids)"));
        assert!(
            sql.lock_rows
                .ends_with("ORDER BY customer_id FOR UPDATE WAIT 3"),
            "{}",
            sql.lock_rows
        );
        assert!(!sql.read_rows.contains("FOR UPDATE"));
        assert!(sql.update_rows.starts_with("UPDATE customer_profile SET "));
        assert!(
            sql.update_rows
                .ends_with("carrier_info = :p_carrier_info WHERE customer_id = :p_customer_id")
        );
        assert!(
            sql.insert_rows
                .starts_with("INSERT INTO customer_profile (")
        );
        assert_eq!(
            sql.delete_rows,
            "DELETE FROM customer_profile WHERE customer_id = :p_customer_id"
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
            &sql.batch_status_lock,
        ] {
            assert!(!text.trim_end().ends_with(';'), "{text}");
        }
    }

    #[test]
    fn the_target_table_is_the_only_identifier_from_config() {
        let sql = Sql::new("crm.customer_master", Duration::from_secs(10));
        for text in [
            &sql.lock_rows,
            &sql.read_rows,
            &sql.update_rows,
            &sql.insert_rows,
            &sql.delete_rows,
        ] {
            assert!(text.contains("crm.customer_master"), "{text}");
            assert!(!text.contains("customer_profile"), "{text}");
        }
        assert!(sql.lock_rows.ends_with("WAIT 10"));
    }

    #[test]
    fn lock_wait_rounds_up_to_whole_seconds() {
        assert_eq!(lock_wait_secs(Duration::from_millis(1)), 1);
        assert_eq!(lock_wait_secs(Duration::from_millis(1000)), 1);
        assert_eq!(lock_wait_secs(Duration::from_millis(1001)), 2);
        assert_eq!(lock_wait_secs(Duration::from_secs(10)), 10);
    }

    #[test]
    fn id_list_queries_bind_one_collection() {
        let sql = sql();
        for text in [
            &sql.lock_rows,
            &sql.read_rows,
            &sql.seen_events,
            &sql.row_states,
        ] {
            assert_eq!(placeholders(text), ["p_ids"], "{text}");
        }
        assert!(sql.row_states.contains("FROM govsync_row_state"));
        assert!(ROW_STATE_MERGE.contains("WHEN NOT MATCHED THEN INSERT"));
    }
}
