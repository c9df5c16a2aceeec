//! Bind values, built by pure functions in the order of the placeholders of
//! [`super::sql`]'s texts, each with the Oracle type it is bound as; and
//! [`check_storable`], which rejects a row Oracle cannot store before any
//! SQL runs.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use oracle::sql_type::{OracleType, ToSql};
use oracle::{Connection, SqlValue};

use super::sql::{Source, Sql, Written, binds_long};
use crate::event::{Column, Row, Value};
use crate::message::{OutMessage, encode_headers};
use crate::sink::plan::RowWrite;
use crate::sink::table::{Adapter, TableMap};
use crate::sink::{
    BatchFilter, LedgerEntry, LogEntry, PartitionKey, ReviewItem, RowState, SinkError, SinkResult,
    Supersede,
};

/// Longest string bound as VARCHAR2 into a CLOB column, and longest value
/// bound as RAW into a BLOB column; longer ones are LONG / LONG RAW binds.
/// The crate rounds bind buffers up to a power of two, and a buffer over
/// 4000 bytes (VARCHAR2) or 2000 bytes (RAW) would already be a LONG bind:
/// these limits keep inline binds inline.
const MAX_INLINE_TEXT: usize = 2000;
const MAX_INLINE_RAW: usize = 1024;
/// The largest VARCHAR2 bind (bytes); a longer value for a VARCHAR2 column
/// cannot fit whatever the column.
const MAX_VARCHAR2_BIND: usize = 32767;

/// One bind value, with the Oracle type it is bound as.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// A VARCHAR2 column.
    Str(Option<String>),
    /// A CLOB column: inline VARCHAR2 when short, LONG when long.
    Text(Option<String>),
    /// A BLOB column: inline RAW when short, LONG RAW when long.
    Bytes(Option<Vec<u8>>),
    Int(Option<i64>),
    /// BINARY_DOUBLE: the exact IEEE value.
    Double(Option<f64>),
    /// TIMESTAMP WITH TIME ZONE, UTC.
    Time(Option<DateTime<Utc>>),
}

/// A statement's binds: (placeholder without `:`, value).
pub type Binds = Vec<(&'static str, Bind)>;

pub(super) fn s(v: &str) -> Bind {
    Bind::Str(Some(v.to_string()))
}
fn os(v: &Option<String>) -> Bind {
    Bind::Str(v.clone())
}
pub(super) fn int(v: impl Into<i64>) -> Bind {
    Bind::Int(Some(v.into()))
}

impl Bind {
    /// Byte length of the value (0 for NULL and fixed-size types).
    fn len(&self) -> usize {
        match self {
            Bind::Str(Some(v)) | Bind::Text(Some(v)) => v.len(),
            Bind::Bytes(Some(v)) => v.len(),
            _ => 0,
        }
    }

    /// The Oracle type for a column whose longest value is `max_len` bytes.
    fn oracle_type(&self, max_len: usize) -> OracleType {
        let n = max_len.max(1) as u32;
        match self {
            Bind::Str(_) => OracleType::Varchar2(n),
            Bind::Text(_) if max_len <= MAX_INLINE_TEXT => OracleType::Varchar2(n),
            Bind::Text(_) => OracleType::Long,
            Bind::Bytes(_) if max_len <= MAX_INLINE_RAW => OracleType::Raw(n),
            Bind::Bytes(_) => OracleType::LongRaw,
            Bind::Int(_) => OracleType::Int64,
            Bind::Double(_) => OracleType::BinaryDouble,
            Bind::Time(_) => OracleType::TimestampTZ(6),
        }
    }
}

impl ToSql for Bind {
    fn oratype(&self, _conn: &Connection) -> oracle::Result<OracleType> {
        Ok(self.oracle_type(self.len()))
    }

    fn to_sql(&self, val: &mut SqlValue) -> oracle::Result<()> {
        match self {
            Bind::Str(v) | Bind::Text(v) => v.to_sql(val),
            Bind::Bytes(v) => v.to_sql(val),
            Bind::Int(v) => v.to_sql(val),
            Bind::Double(v) => v.to_sql(val),
            Bind::Time(v) => v.to_sql(val),
        }
    }
}

/// The Oracle type of each column of an array DML, from its longest value.
pub fn column_types(rows: &[Binds]) -> Vec<OracleType> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, (_, b))| {
            let max = rows.iter().map(|r| r[i].1.len()).max().unwrap_or(0);
            b.oracle_type(max)
        })
        .collect()
}

pub fn key_binds(key: &PartitionKey) -> Binds {
    vec![
        ("p_group", s(&key.group)),
        ("p_topic", s(&key.topic)),
        ("p_partition", int(key.partition)),
    ]
}

pub fn outbox_read_binds(key: &PartitionKey, from: i64, to: i64) -> Binds {
    let mut b = key_binds(key);
    b.push(("p_from", int(from)));
    b.push(("p_to", int(to)));
    b
}

pub fn advance_binds(key: &PartitionKey, next: i64, batch_id: &str) -> Binds {
    let mut b = vec![("p_next_offset", int(next)), ("p_batch_id", s(batch_id))];
    b.extend(key_binds(key));
    b.push(("p_upto", int(next)));
    b
}

pub fn prune_binds(key: &PartitionKey, upto: i64) -> Binds {
    let mut b = key_binds(key);
    b.push(("p_upto", int(upto)));
    b
}

/// One row per change-log entry, in `CHANGE_LOG_INSERT`'s order.
pub fn change_log_binds(batch_id: &str, log: &[LogEntry]) -> Vec<Binds> {
    let image = |v: &Option<String>| Bind::Text(v.clone());
    log.iter()
        .map(|l| {
            vec![
                ("p_batch_id", s(batch_id)),
                ("p_event_id", s(&l.event_id)),
                ("p_customer_id", s(&l.customer_id)),
                ("p_data_type", s(l.data_type.as_str())),
                ("p_operation", s(&l.operation)),
                ("p_outcome", s(l.outcome)),
                ("p_governed_at", Bind::Time(Some(l.governed_at))),
                ("p_partition", int(l.partition)),
                ("p_offset", int(l.offset)),
                ("p_before_image", image(&l.before)),
                ("p_after_image", image(&l.after)),
            ]
        })
        .collect()
}

/// A logical value bound as its adapter's type (whatever the value, so
/// an array DML's column has one type): a boolean as 1/0, a time as
/// TIMESTAMP WITH TIME ZONE (RFC 3339 text for a text column), a score as
/// BINARY_DOUBLE.
fn field_bind(c: Column, adapter: Adapter, v: Value) -> Bind {
    match adapter {
        Adapter::Text if binds_long(c, adapter) => Bind::Text(v.as_text().map(str::to_string)),
        Adapter::Text => Bind::Str(v.as_text().map(str::to_string)),
        Adapter::Float | Adapter::Decimal { .. } | Adapter::Integer => Bind::Double(match v {
            Value::Float(x) => Some(x),
            _ => None,
        }),
        Adapter::Bool | Adapter::BoolNumber | Adapter::BoolYn => Bind::Int(match v {
            Value::Bool(b) => Some(i64::from(b)),
            _ => None,
        }),
        Adapter::TimeTz { .. } | Adapter::TimeLocal { .. } => Bind::Time(match v {
            Value::Time(t) => Some(t),
            _ => None,
        }),
        Adapter::TimeText => Bind::Str(match v {
            Value::Time(t) => Some(time_text(t)),
            _ => None,
        }),
    }
}

/// A time as RFC 3339 text in UTC with microseconds (a text column).
fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The written columns of a row, in `Sql::written`'s order (shared by the
/// update and the insert, after their leading binds).
fn row_value_binds(written: &[Written], r: &Row) -> Binds {
    written
        .iter()
        .map(|w| {
            let b = match w.source {
                Source::Field(c, adapter) => field_bind(c, adapter, r.get(c)),
                Source::Version => int(r.version),
            };
            (w.placeholder, b)
        })
        .collect()
}

/// One row per state, for [`super::sql::ROW_STATE_MERGE`].
pub fn row_state_binds(state: &[RowState]) -> Vec<Binds> {
    state
        .iter()
        .map(|st| {
            vec![
                ("p_customer_id", s(&st.customer_id)),
                ("p_address", Bind::Time(st.governed_at[0])),
                ("p_id_card", Bind::Time(st.governed_at[1])),
                ("p_phone", Bind::Time(st.governed_at[2])),
                ("p_version", Bind::Int(st.version)),
            ]
        })
        .collect()
}

/// One row per supersession, in `REVIEW_SUPERSEDE`'s order.
pub fn supersede_binds(supersede: &[Supersede]) -> Vec<Binds> {
    supersede
        .iter()
        .map(|sp| {
            vec![
                ("p_by", s(&sp.by)),
                ("p_customer_id", s(&sp.customer_id)),
                ("p_data_type", s(sp.data_type.as_str())),
            ]
        })
        .collect()
}

/// One row per review item to insert, in `REVIEW_ITEM_INSERT`'s order:
/// the items whose event id is neither `present` (stored already) nor
/// repeated from an earlier item of the list (the first one is kept).
/// The JSON texts are CLOB binds, last.
pub fn review_item_binds(items: &[ReviewItem], present: &HashSet<String>) -> Vec<Binds> {
    let mut taken: HashSet<&str> = HashSet::new();
    items
        .iter()
        .filter(|it| !present.contains(&it.event_id) && taken.insert(it.event_id.as_str()))
        .map(|it| {
            vec![
                ("p_event_id", s(&it.event_id)),
                ("p_batch_id", s(&it.batch_id)),
                ("p_customer_id", s(&it.customer_id)),
                ("p_data_type", s(it.data_type.as_str())),
                ("p_region_code", s(&it.region_code)),
                ("p_reason", s(it.reason)),
                ("p_priority", s(it.priority)),
                ("p_row_version", Bind::Int(it.row_version)),
                ("p_governed_at", Bind::Time(Some(it.governed_at))),
                ("p_status", s(it.status)),
                ("p_superseded_by", os(&it.superseded_by)),
                ("p_details", Bind::Text(Some(it.details.clone()))),
                ("p_proposed", Bind::Text(Some(it.proposed.clone()))),
                ("p_current_row", Bind::Text(it.current.clone())),
            ]
        })
        .collect()
}

/// `REVIEW_ITEMS_LIST`: a NULL status lists every item.
pub fn review_items_binds(status: Option<&str>) -> Binds {
    let status = Bind::Str(status.map(str::to_string));
    vec![("p_status", status.clone()), ("p_status_eq", status)]
}

/// One row per update, in `Sql::update_rows`' order.
pub fn update_binds(sql: &Sql, writes: &[RowWrite]) -> Vec<Binds> {
    writes
        .iter()
        .map(|w| {
            let mut b = row_value_binds(&sql.written, &w.row);
            b.push(("p_customer_id", s(&w.customer_id)));
            b
        })
        .collect()
}

/// One row per insert, in `Sql::insert_rows`' order.
pub fn insert_binds(sql: &Sql, writes: &[RowWrite]) -> Vec<Binds> {
    writes
        .iter()
        .map(|w| {
            let mut b = vec![("p_customer_id", s(&w.customer_id))];
            if sql.map.name.is_some() {
                b.push(("p_name", os(&w.name)));
            }
            b.extend(row_value_binds(&sql.written, &w.row));
            b
        })
        .collect()
}

pub fn delete_binds(ids: &[String]) -> Vec<Binds> {
    ids.iter()
        .map(|id| vec![("p_customer_id", s(id))])
        .collect()
}

/// One row per message, in `OUTBOX_INSERT`'s order; `seq` is the position.
pub fn outbox_binds(
    batch_id: &str,
    key: &PartitionKey,
    next_offset: i64,
    msgs: &[OutMessage],
) -> Vec<Binds> {
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            vec![
                ("p_batch_id", s(batch_id)),
                ("p_seq", int(i as i64)),
                ("p_group", s(&key.group)),
                ("p_topic", s(&key.topic)),
                ("p_partition", int(key.partition)),
                ("p_next_offset", int(next_offset)),
                ("p_dest_topic", s(&m.topic)),
                ("p_key", Bind::Bytes(m.key.clone())),
                ("p_value", Bind::Bytes(m.payload.clone())),
                ("p_headers", Bind::Bytes(Some(encode_headers(&m.headers)))),
            ]
        })
        .collect()
}

pub fn ledger_binds(e: &LedgerEntry) -> Binds {
    vec![
        ("p_batch_id", s(&e.batch_id)),
        ("p_kind", s(&e.kind)),
        ("p_group", s(&e.group)),
        ("p_topic", s(&e.topic)),
        ("p_partition", int(e.partition)),
        ("p_first_offset", int(e.first_offset)),
        ("p_last_offset", int(e.last_offset)),
        ("p_records", int(e.records)),
        (
            "p_counts",
            s(&serde_json::to_string(&e.counts).unwrap_or_default()),
        ),
        ("p_started_at", Bind::Time(Some(e.started_at))),
        ("p_duration_ms", int(e.duration_ms)),
        ("p_attempts", int(e.attempts)),
        ("p_status", s(&e.status)),
    ]
}

pub fn batches_binds(f: &BatchFilter) -> Binds {
    let topic = Bind::Str(f.topic.clone());
    let partition = Bind::Int(f.partition.map(i64::from));
    let status = Bind::Str(f.status.clone());
    let since = Bind::Time(f.since);
    let batch = Bind::Str(f.batch_id.clone());
    vec![
        ("p_topic", topic.clone()),
        ("p_topic_eq", topic),
        ("p_partition", partition.clone()),
        ("p_partition_eq", partition),
        ("p_status", status.clone()),
        ("p_status_eq", status),
        ("p_since", since.clone()),
        ("p_since_ge", since),
        ("p_batch_id", batch.clone()),
        ("p_batch_id_eq", batch),
        ("p_limit", int(if f.limit > 0 { f.limit } else { 50 })),
    ]
}

/// Rejects, before any SQL runs, a row Oracle cannot store as written: an
/// empty string in a mapped column (Oracle stores it as NULL, so the
/// post-write verification would fail the whole batch) or a string longer
/// than any VARCHAR2 bind. A record-level error, so the protocol's
/// bisection dead-letters the one record that brought the value.
pub fn check_storable(map: &TableMap, writes: &[RowWrite]) -> SinkResult<()> {
    for w in writes {
        if w.customer_id.is_empty() {
            return Err(not_storable(w, "customer_id", &map.key, "is empty"));
        }
        for (c, m) in map.mapped() {
            let Value::Text(v) = w.row.get(c) else {
                continue;
            };
            if v.is_empty() {
                return Err(not_storable(
                    w,
                    c.name(),
                    &m.column,
                    "is an empty string, which Oracle stores as NULL",
                ));
            }
            if !binds_long(c, m.adapter) && v.len() > MAX_VARCHAR2_BIND {
                return Err(not_storable(
                    w,
                    c.name(),
                    &m.column,
                    &format!(
                        "holds {} bytes, more than any Oracle VARCHAR2 column",
                        v.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `field` is govsync's name (bounded: it labels the error), `column` the
/// table's.
fn not_storable(w: &RowWrite, field: &str, column: &str, what: &str) -> SinkError {
    SinkError::Record {
        code: None,
        constraint: Some(field.to_string()),
        message: format!(
            "the value for {field} (column {column}) of customer {} {what}",
            w.customer_id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{
        catalog, col, cust_base_catalog, cust_base_mapping, cust_base_sql, key, placeholders, sql,
        t, write,
    };
    use super::super::sql::*;
    use super::*;
    use crate::event::DataType;
    use std::collections::{BTreeMap, HashSet};

    fn review_item(event_id: &str, current: Option<&str>) -> ReviewItem {
        ReviewItem {
            event_id: event_id.into(),
            batch_id: "b1".into(),
            customer_id: "C1".into(),
            data_type: DataType::Address,
            region_code: "3201".into(),
            reason: "flagged",
            priority: "high",
            details: r#"["low quality"]"#.into(),
            proposed: serde_json::json!({"address": "江苏省南京市"}).to_string(),
            current: current.map(str::to_string),
            row_version: current.map(|_| 4),
            governed_at: t("2024-01-15T02:20:00Z"),
            status: "open",
            superseded_by: None,
        }
    }

    /// Binding by position: every placeholder once, in the binds' order.
    fn assert_binds(sql: &str, binds: &Binds) {
        let names: Vec<&str> = binds.iter().map(|(n, _)| *n).collect();
        let found = placeholders(sql);
        assert_eq!(found, names, "placeholders of {sql}");
        let unique: HashSet<&String> = found.iter().collect();
        assert_eq!(unique.len(), found.len(), "a placeholder repeats in {sql}");
    }

    #[test]
    fn bind_order_of_every_statement() {
        let sql = sql();
        let k = key();
        assert_binds(WATERMARK_READ, &key_binds(&k));
        assert_binds(&sql.watermark_lock, &key_binds(&k));
        assert_binds(WATERMARK_CREATE, &key_binds(&k));
        assert_binds(WATERMARK_ADVANCE, &advance_binds(&k, 42, "b1"));
        assert_binds(OUTBOX_READ, &outbox_read_binds(&k, 10, 20));
        assert_binds(OUTBOX_PRUNE, &prune_binds(&k, 7));
        let log = vec![LogEntry {
            event_id: "e1".into(),
            customer_id: "C1".into(),
            data_type: DataType::Address,
            operation: "update".into(),
            outcome: "applied",
            governed_at: t("2024-01-15T02:20:00Z"),
            before: Some(serde_json::json!({"address": "old"}).to_string()),
            after: Some(serde_json::json!({"address": "new"}).to_string()),
            partition: 3,
            offset: 99,
        }];
        assert_binds(CHANGE_LOG_INSERT, &change_log_binds("b1", &log)[0]);
        assert_binds(&sql.update_rows, &update_binds(&sql, &[write("C1")])[0]);
        assert_binds(&sql.insert_rows, &insert_binds(&sql, &[write("C1")])[0]);
        assert_binds(&sql.delete_rows, &delete_binds(&["C1".into()])[0]);
        let state = RowState {
            customer_id: "C1".into(),
            governed_at: [Some(t("2024-01-15T02:20:00Z")), None, None],
            version: Some(4),
        };
        assert_binds(ROW_STATE_MERGE, &row_state_binds(&[state])[0]);
        let supersede = Supersede {
            customer_id: "C1".into(),
            data_type: DataType::Phone,
            by: "e9".into(),
        };
        assert_binds(REVIEW_SUPERSEDE, &supersede_binds(&[supersede])[0]);
        for current in [None, Some(r#"{"address":"old"}"#)] {
            let items = review_item_binds(&[review_item("e1", current)], &HashSet::new());
            assert_binds(REVIEW_ITEM_INSERT, &items[0]);
        }
        for status in [None, Some("open")] {
            assert_binds(
                super::super::review::REVIEW_ITEMS_LIST,
                &review_items_binds(status),
            );
        }
        let msg = OutMessage {
            topic: "review".into(),
            key: Some(b"3201".to_vec()),
            payload: Some(b"{}".to_vec()),
            headers: vec![("h".into(), b"v".to_vec())],
        };
        assert_binds(OUTBOX_INSERT, &outbox_binds("b1", &k, 21, &[msg])[0]);
        let ledger = LedgerEntry {
            batch_id: "b1".into(),
            kind: "apply".into(),
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            first_offset: 10,
            last_offset: 20,
            records: 11,
            counts: BTreeMap::from([("applied".to_string(), 11)]),
            started_at: t("2024-01-15T02:20:00Z"),
            duration_ms: 12,
            attempts: 1,
            status: "committed".into(),
        };
        assert_binds(LEDGER_INSERT, &ledger_binds(&ledger));
        assert_binds(BATCHES_LIST, &batches_binds(&BatchFilter::default()));
        assert_binds(
            BATCH_LOG_READ,
            &vec![("p_batch_id", Bind::Str(Some("b1".into())))],
        );
        assert_eq!(placeholders(BATCH_STATUS_SET), ["p_status", "p_batch_id"]);
        assert_eq!(placeholders(&sql.batch_status_lock), ["p_batch_id"]);
        assert_eq!(
            placeholders(MIGRATION_RECORD),
            ["p_set", "p_version", "p_description", "p_checksum"]
        );
    }

    #[test]
    fn bind_values_carry_the_row() {
        let sql = sql();
        let w = write("C1");
        let u = &update_binds(&sql, std::slice::from_ref(&w))[0];
        let get = |b: &Binds, name: &str| b.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(get(u, "p_customer_id"), Bind::Str(Some("C1".into())));
        assert_eq!(get(u, "p_geo_lat"), Bind::Double(Some(32.0581)));
        assert_eq!(get(u, "p_review_flag"), Bind::Int(Some(1)));
        assert_eq!(get(u, "p_review_priority"), Bind::Str(None));
        assert_eq!(get(u, "p_version"), Bind::Int(Some(4)));
        assert_eq!(
            get(u, "p_last_governance_time"),
            Bind::Time(Some(t("2024-01-15T02:20:00.123456Z")))
        );
        // last_update belongs to the business side: never written.
        assert!(u.iter().all(|(n, _)| !n.contains("last_update")));
        let i = &insert_binds(&sql, &[w])[0];
        assert_eq!(get(i, "p_name"), Bind::Str(Some("张三".into())));
        // The CLOB column binds last in both statements.
        assert_eq!(u[u.len() - 2].0, "p_carrier_info");
        assert_eq!(i[i.len() - 1].0, "p_carrier_info");

        let f = BatchFilter {
            limit: 0,
            partition: Some(2),
            ..Default::default()
        };
        let b = batches_binds(&f);
        assert_eq!(get(&b, "p_limit"), Bind::Int(Some(50)));
        assert_eq!(get(&b, "p_partition_eq"), Bind::Int(Some(2)));
        assert_eq!(get(&b, "p_topic"), Bind::Str(None));
        let adv = advance_binds(&key(), 42, "b1");
        assert_eq!(get(&adv, "p_next_offset"), get(&adv, "p_upto"));
    }

    #[test]
    fn column_types_follow_the_longest_value() {
        let long_text = "x".repeat(MAX_INLINE_TEXT + 1);
        let rows: Vec<Binds> = vec![
            vec![
                ("a", Bind::Str(Some("abc".into()))),
                ("b", Bind::Text(Some("short".into()))),
                ("c", Bind::Bytes(None)),
                ("d", Bind::Int(None)),
                ("e", Bind::Double(Some(0.5))),
                ("f", Bind::Time(None)),
            ],
            vec![
                ("a", Bind::Str(Some("江苏".into()))),
                ("b", Bind::Text(Some(long_text))),
                ("c", Bind::Bytes(Some(vec![0; MAX_INLINE_RAW]))),
                ("d", Bind::Int(Some(1))),
                ("e", Bind::Double(None)),
                ("f", Bind::Time(None)),
            ],
        ];
        assert_eq!(
            column_types(&rows),
            vec![
                OracleType::Varchar2(6),
                OracleType::Long,
                OracleType::Raw(MAX_INLINE_RAW as u32),
                OracleType::Int64,
                OracleType::BinaryDouble,
                OracleType::TimestampTZ(6),
            ]
        );
        let all_null: Vec<Binds> = vec![vec![("a", Bind::Str(None)), ("b", Bind::Bytes(None))]];
        assert_eq!(
            column_types(&all_null),
            vec![OracleType::Varchar2(1), OracleType::Raw(1)]
        );
        let big_raw: Vec<Binds> = vec![vec![("c", Bind::Bytes(Some(vec![1; 3000])))]];
        assert_eq!(column_types(&big_raw), vec![OracleType::LongRaw]);
        assert!(column_types(&[]).is_empty());
    }

    /// Oracle takes a LONG bind only after every other bind that may be
    /// long (ORA-24816): the CLOB/BLOB columns close their statements (the
    /// update's WHERE key is short).
    #[test]
    fn lob_column_binds_come_last() {
        let sql = sql();
        let is_lob = |b: &Bind| matches!(b, Bind::Text(_) | Bind::Bytes(_));
        let log = change_log_binds(
            "b1",
            &[LogEntry {
                event_id: "e".into(),
                customer_id: "C".into(),
                data_type: DataType::Phone,
                operation: "update".into(),
                outcome: "applied",
                governed_at: t("2024-01-15T02:20:00Z"),
                before: None,
                after: None,
                partition: 0,
                offset: 0,
            }],
        );
        let msg = OutMessage {
            topic: "t".into(),
            key: None,
            payload: None,
            headers: vec![],
        };
        let mut update = update_binds(&sql, &[write("C1")]).remove(0);
        assert_eq!(update.pop().unwrap().0, "p_customer_id");
        for binds in [
            log[0].clone(),
            review_item_binds(&[review_item("e", None)], &HashSet::new())[0].clone(),
            outbox_binds("b1", &key(), 1, &[msg])[0].clone(),
            insert_binds(&sql, &[write("C1")])[0].clone(),
            update,
        ] {
            let first = binds.iter().position(|(_, b)| is_lob(b)).unwrap();
            assert!(
                binds[first..].iter().all(|(_, b)| is_lob(b)),
                "{:?}",
                binds.iter().map(|(n, _)| *n).collect::<Vec<_>>()
            );
        }
    }

    /// An item whose event id is stored already, or repeated in the call,
    /// is left out of the insert; the others carry their values with one
    /// type per column whatever is NULL.
    #[test]
    fn review_items_already_there_are_left_out() {
        let mut superseded = review_item("e3", Some(r#"{"address":"old"}"#));
        superseded.status = "superseded";
        superseded.superseded_by = Some("e4".into());
        let items = [
            review_item("e1", None),
            review_item("e2", None),
            superseded,
            review_item("e1", Some("{}")),
        ];
        let present = HashSet::from(["e2".to_string()]);
        let rows = review_item_binds(&items, &present);
        let get = |b: &Binds, name: &str| b.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        let ids: Vec<Bind> = rows.iter().map(|r| get(r, "p_event_id")).collect();
        assert_eq!(
            ids,
            [Bind::Str(Some("e1".into())), Bind::Str(Some("e3".into()))]
        );
        // The first e1 is kept (no current row).
        assert_eq!(get(&rows[0], "p_current_row"), Bind::Text(None));
        assert_eq!(get(&rows[0], "p_row_version"), Bind::Int(None));
        assert_eq!(get(&rows[0], "p_status"), Bind::Str(Some("open".into())));
        assert_eq!(get(&rows[0], "p_superseded_by"), Bind::Str(None));
        assert_eq!(
            get(&rows[0], "p_data_type"),
            Bind::Str(Some("address".into()))
        );
        assert_eq!(
            get(&rows[0], "p_governed_at"),
            Bind::Time(Some(t("2024-01-15T02:20:00Z")))
        );
        assert_eq!(
            get(&rows[1], "p_status"),
            Bind::Str(Some("superseded".into()))
        );
        assert_eq!(
            get(&rows[1], "p_superseded_by"),
            Bind::Str(Some("e4".into()))
        );
        assert_eq!(get(&rows[1], "p_row_version"), Bind::Int(Some(4)));
        assert_eq!(
            get(&rows[1], "p_current_row"),
            Bind::Text(Some(r#"{"address":"old"}"#.into()))
        );
        let types = column_types(&rows);
        assert_eq!(types[7], OracleType::Int64);
        assert_eq!(types[8], OracleType::TimestampTZ(6));
        // A long JSON text is a LONG bind (the insert takes it, last).
        let mut long = review_item("e5", None);
        long.proposed = "x".repeat(MAX_INLINE_TEXT + 1);
        let rows = review_item_binds(&[long], &HashSet::new());
        assert_eq!(column_types(&rows)[12], OracleType::Long);
        assert!(review_item_binds(&items[1..2], &present).is_empty());
        // The supersession binds what it supersedes by, then the probe.
        let sp = supersede_binds(&[Supersede {
            customer_id: "C1".into(),
            data_type: DataType::IdCard,
            by: "e9".into(),
        }]);
        assert_eq!(
            sp[0],
            vec![
                ("p_by", Bind::Str(Some("e9".into()))),
                ("p_customer_id", Bind::Str(Some("C1".into()))),
                ("p_data_type", Bind::Str(Some("id_card".into()))),
            ]
        );
        assert_eq!(
            review_items_binds(Some("open")),
            vec![
                ("p_status", Bind::Str(Some("open".into()))),
                ("p_status_eq", Bind::Str(Some("open".into()))),
            ]
        );
        assert_eq!(review_items_binds(None)[0].1, Bind::Str(None));
    }

    #[test]
    fn rows_oracle_cannot_store_are_record_errors() {
        let sql = sql();
        assert!(check_storable(&sql.map, &[write("C1")]).is_ok());
        let mut empty = write("C2");
        empty.row.validation_status = Some(String::new());
        match check_storable(&sql.map, &[write("C1"), empty]) {
            Err(SinkError::Record {
                constraint,
                message,
                ..
            }) => {
                assert_eq!(constraint.as_deref(), Some("validation_status"));
                assert!(message.contains("C2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let mut long = write("C3");
        long.row.address = Some("x".repeat(MAX_VARCHAR2_BIND + 1));
        assert_eq!(
            check_storable(&sql.map, &[long]).unwrap_err().class(),
            "record"
        );
        // A long CLOB value is fine: it is a LONG bind.
        let mut clob = write("C4");
        clob.row.carrier_info = Some("x".repeat(MAX_VARCHAR2_BIND + 1));
        assert!(check_storable(&sql.map, &[clob]).is_ok());
    }

    /// CRM.CUST_BASE: one bind per placeholder, in order, for only the
    /// mapped fields; values stay logical (the SQL converts them).
    #[test]
    fn a_bank_tables_binds_line_up_with_its_statements() {
        let sql = cust_base_sql();
        let w = write("C1");
        let mut unflagged = write("C2");
        unflagged.row.review_flag = None;
        let updates = update_binds(&sql, &[w.clone(), unflagged.clone()]);
        let inserts = insert_binds(&sql, &[w.clone(), unflagged]);
        for u in &updates {
            assert_binds(&sql.update_rows, u);
        }
        for i in &inserts {
            assert_binds(&sql.insert_rows, i);
        }
        assert_binds(&sql.delete_rows, &delete_binds(&["C1".into()])[0]);
        let names = |b: &Binds| b.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        assert_eq!(
            names(&updates[0]),
            [
                "p_address",
                "p_id_card",
                "p_phone",
                "p_quality_score",
                "p_validation_status",
                "p_review_flag",
                "p_customer_id"
            ]
        );
        // No name, version or unmapped field is bound.
        assert_eq!(names(&inserts[0])[0], "p_customer_id");
        assert_eq!(names(&inserts[0]).len(), 7);
        let get = |b: &Binds, name: &str| b.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        let u = &updates[0];
        assert_eq!(get(u, "p_review_flag"), Bind::Int(Some(1)));
        assert_eq!(get(u, "p_quality_score"), Bind::Double(Some(0.92)));
        assert_eq!(
            get(u, "p_address"),
            Bind::Str(Some("江苏省南京市玄武区中山路123号".into()))
        );
        assert_eq!(get(u, "p_id_card"), Bind::Str(None));
        assert_eq!(get(u, "p_customer_id"), Bind::Str(Some("C1".into())));
        // A NULL flag is still a number: one type per array DML column.
        assert_eq!(get(&updates[1], "p_review_flag"), Bind::Int(None));
        assert_eq!(column_types(&updates)[5], OracleType::Int64);
        // An unmapped field is never written, so never checked.
        let mut empty_carrier = write("C3");
        empty_carrier.row.carrier_info = Some(String::new());
        assert!(check_storable(&sql.map, &[empty_carrier]).is_ok());
        let mut empty_address = write("C4");
        empty_address.row.address = Some(String::new());
        match check_storable(&sql.map, &[empty_address]) {
            Err(SinkError::Record {
                constraint,
                message,
                ..
            }) => {
                assert_eq!(constraint.as_deref(), Some("address"));
                assert!(
                    message.contains("ADDR_LINE") && message.contains("C4"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A time in a CLOB column: RFC 3339 text in UTC with microseconds,
    /// a short VARCHAR2 bind.
    #[test]
    fn a_time_in_a_text_column_is_bound_as_rfc3339() {
        let mut cat = cust_base_catalog();
        cat.columns
            .extend(catalog(&[col("GOV_TEXT", "CLOB", 0, None, None)], &[]).columns);
        let mut m = cust_base_mapping();
        m.columns
            .insert(Column::LastGovernanceTime, "gov_text".into());
        let map = crate::sink::table::resolve(&m, "CRM.CUST_BASE", "x".into(), Some(&cat)).unwrap();
        let sql = Sql::new(std::sync::Arc::new(map), std::time::Duration::from_secs(3));
        assert!(
            sql.update_rows
                .contains("\"GOV_TEXT\" = :p_last_governance_time")
        );
        let u = &update_binds(&sql, &[write("C1")])[0];
        assert_binds(&sql.update_rows, u);
        assert_eq!(
            u.iter()
                .find(|(n, _)| *n == "p_last_governance_time")
                .unwrap()
                .1,
            Bind::Str(Some("2024-01-15T02:20:00.123456Z".into()))
        );
    }
}
