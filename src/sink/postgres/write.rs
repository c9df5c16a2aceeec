//! The batch's writes as ONE statement of data-modifying CTEs: the change
//! log, the row updates and inserts `RETURNING` the rows as stored and
//! compared with the values given, the row states, the outbox, the ledger
//! and the watermark. Values are bound as arrays and unnested.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments as _, AssertSqlSafe, Encode, Postgres, Row as _, Transaction, Type};

use super::Sql;
use crate::message::{OutMessage, encode_headers};
use crate::sink::plan::RowWrite;
use crate::sink::{
    LedgerEntry, LogEntry, PartitionKey, ReviewItem, RowState, SinkError, SinkResult, Stored,
    Supersede, Writes,
};

/// A statement whose placeholders are numbered as values are bound.
#[derive(Default)]
pub(super) struct Statement {
    pub(super) sql: String,
    pub(super) args: PgArguments,
    n: usize,
}

impl Statement {
    /// Binds `v` and returns its placeholder with `cast` (`::text[]` …).
    fn bind<'t, T: Encode<'t, Postgres> + Type<Postgres>>(
        &mut self,
        v: T,
        cast: &str,
    ) -> SinkResult<String> {
        self.args
            .add(v)
            .map_err(|e| SinkError::Fatal(format!("binding a statement value: {e}")))?;
        self.n += 1;
        Ok(format!("${}{cast}", self.n))
    }
}

/// Column arrays of row writes, in the order of the update and insert
/// parts of [`write_statement`], borrowing the plan's values.
#[derive(Default)]
struct RowArrays<'a> {
    id: Vec<&'a str>,
    address: Vec<Option<&'a str>>,
    lat: Vec<Option<f64>>,
    lon: Vec<Option<f64>>,
    accuracy: Vec<Option<&'a str>>,
    id_card: Vec<Option<&'a str>>,
    phone: Vec<Option<&'a str>>,
    carrier: Vec<Option<&'a str>>,
    score: Vec<Option<f64>>,
    status: Vec<Option<&'a str>>,
    flag: Vec<Option<bool>>,
    priority: Vec<Option<&'a str>>,
    gov_time: Vec<Option<DateTime<Utc>>>,
    version: Vec<i64>,
    name: Vec<Option<&'a str>>,
}

impl<'a> RowArrays<'a> {
    fn of(writes: &'a [RowWrite]) -> Self {
        let mut a = RowArrays::default();
        for w in writes {
            let r = &w.row;
            a.id.push(&w.customer_id);
            a.address.push(r.address.as_deref());
            a.lat.push(r.geo_lat);
            a.lon.push(r.geo_lon);
            a.accuracy.push(r.geo_accuracy.as_deref());
            a.id_card.push(r.id_card.as_deref());
            a.phone.push(r.phone.as_deref());
            a.carrier.push(r.carrier_info.as_deref());
            a.score.push(r.quality_score);
            a.status.push(r.validation_status.as_deref());
            a.flag.push(r.review_flag);
            a.priority.push(r.review_priority.as_deref());
            a.gov_time.push(r.last_governance_time);
            a.version.push(r.version);
            a.name.push(w.name.as_deref());
        }
        a
    }

    /// Binds the arrays and returns their `UNNEST(…)` list.
    fn bind(self, st: &mut Statement, with_name: bool) -> SinkResult<String> {
        let mut p = vec![
            st.bind(self.id, "::text[]")?,
            st.bind(self.address, "::text[]")?,
            st.bind(self.lat, "::float8[]")?,
            st.bind(self.lon, "::float8[]")?,
            st.bind(self.accuracy, "::text[]")?,
            st.bind(self.id_card, "::text[]")?,
            st.bind(self.phone, "::text[]")?,
            st.bind(self.carrier, "::text[]")?,
            st.bind(self.score, "::float8[]")?,
            st.bind(self.status, "::text[]")?,
            st.bind(self.flag, "::bool[]")?,
            st.bind(self.priority, "::text[]")?,
            st.bind(self.gov_time, "::timestamptz[]")?,
            st.bind(self.version, "::int8[]")?,
        ];
        if with_name {
            p.push(st.bind(self.name, "::text[]")?);
        }
        Ok(p.join(", "))
    }
}

const ROW_FIELDS: &str = "customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
    quality_score, validation_status, review_flag, review_priority, last_governance_time, version";

/// The change-log part of [`write_statement`], and the placeholders of its
/// event id, customer id, data type and outcome arrays (the supersession
/// of review items reads them again instead of binding its own).
fn log_part(
    st: &mut Statement,
    batch_id: &str,
    log: &[LogEntry],
) -> SinkResult<(String, [String; 4])> {
    let batch = st.bind(batch_id, "::text")?;
    let cols = [
        st.bind(
            log.iter().map(|l| l.event_id.as_str()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter()
                .map(|l| l.customer_id.as_str())
                .collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.data_type.as_str()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.operation.as_str()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.outcome).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.governed_at).collect::<Vec<_>>(),
            "::timestamptz[]",
        )?,
        st.bind(
            log.iter().map(|l| l.before.as_deref()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.after.as_deref()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.partition).collect::<Vec<_>>(),
            "::int4[]",
        )?,
        st.bind(log.iter().map(|l| l.offset).collect::<Vec<_>>(), "::int8[]")?,
    ];
    let text = format!(
        "log AS (INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, operation, \
         outcome, governed_at, before_image, after_image, source_partition, source_offset) \
         SELECT {batch}, u.* FROM UNNEST({}) AS u)",
        cols.join(", ")
    );
    let [ev, cust, dt, _, outcome, ..] = cols;
    Ok((text, [ev, cust, dt, outcome]))
}

/// The supersession of open review items by the batch's applied and
/// flagged results, read from the change log's arrays (`log`: their
/// placeholders): per customer and data type the last such result. A
/// data-modifying CTE does not see the rows another inserts in the same
/// statement, so the items this batch raises are untouched.
fn supersede_from_log(log: &[String; 4]) -> String {
    let [ev, cust, dt, outcome] = log;
    format!(
        "rs AS (UPDATE govsync_review_item r SET status = 'superseded', superseded_by = l.event_id \
         FROM (SELECT DISTINCT ON (u.customer_id, u.data_type) u.customer_id, u.data_type, u.event_id \
         FROM UNNEST({ev}, {cust}, {dt}, {outcome}) WITH ORDINALITY AS u(event_id, customer_id, data_type, outcome, n) \
         WHERE u.outcome IN ('applied', 'flagged') ORDER BY u.customer_id, u.data_type, u.n DESC) l \
         WHERE r.status = 'open' AND r.customer_id = l.customer_id AND r.data_type = l.data_type)"
    )
}

/// The row-state part of [`write_statement`].
pub(super) fn state_part(st: &mut Statement, state: &[RowState]) -> SinkResult<String> {
    let at = |i: usize| state.iter().map(|s| s.governed_at[i]).collect::<Vec<_>>();
    let cols = [
        st.bind(
            state
                .iter()
                .map(|s| s.customer_id.as_str())
                .collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(at(0), "::timestamptz[]")?,
        st.bind(at(1), "::timestamptz[]")?,
        st.bind(at(2), "::timestamptz[]")?,
        st.bind(
            state.iter().map(|s| s.version).collect::<Vec<_>>(),
            "::int8[]",
        )?,
    ];
    Ok(format!(
        "st AS (INSERT INTO govsync_row_state (customer_id, address_governed_at, id_card_governed_at, \
         phone_governed_at, version) SELECT * FROM UNNEST({}) \
         ON CONFLICT (customer_id) DO UPDATE SET address_governed_at = EXCLUDED.address_governed_at, \
         id_card_governed_at = EXCLUDED.id_card_governed_at, phone_governed_at = EXCLUDED.phone_governed_at, \
         version = coalesce(EXCLUDED.version, govsync_row_state.version))",
        cols.join(", ")
    ))
}

/// The review parts of [`write_statement`]: first the supersession of the
/// open items of earlier batches (a data-modifying CTE does not see the
/// rows another inserts in the same statement, so the new items are
/// untouched), then the new items.
pub(super) fn review_parts(
    st: &mut Statement,
    items: &[ReviewItem],
    supersede: &[Supersede],
) -> SinkResult<Vec<String>> {
    let mut parts = Vec::new();
    if !supersede.is_empty() {
        let cols = [
            st.bind(
                supersede
                    .iter()
                    .map(|s| s.customer_id.as_str())
                    .collect::<Vec<_>>(),
                "::text[]",
            )?,
            st.bind(
                supersede
                    .iter()
                    .map(|s| s.data_type.as_str())
                    .collect::<Vec<_>>(),
                "::text[]",
            )?,
            st.bind(
                supersede.iter().map(|s| s.by.as_str()).collect::<Vec<_>>(),
                "::text[]",
            )?,
        ];
        parts.push(format!(
            "rs AS (UPDATE govsync_review_item r SET status = 'superseded', superseded_by = u.by \
             FROM UNNEST({}) AS u(cust, dt, by) \
             WHERE r.status = 'open' AND r.customer_id = u.cust AND r.data_type = u.dt)",
            cols.join(", ")
        ));
    }
    if !items.is_empty() {
        let text = |f: fn(&ReviewItem) -> &str| items.iter().map(f).collect::<Vec<_>>();
        let cols = [
            st.bind(text(|i| &i.event_id), "::text[]")?,
            st.bind(text(|i| &i.batch_id), "::text[]")?,
            st.bind(text(|i| &i.customer_id), "::text[]")?,
            st.bind(text(|i| i.data_type.as_str()), "::text[]")?,
            st.bind(text(|i| &i.region_code), "::text[]")?,
            st.bind(text(|i| i.reason), "::text[]")?,
            st.bind(text(|i| i.priority), "::text[]")?,
            st.bind(text(|i| &i.details), "::text[]")?,
            st.bind(text(|i| &i.proposed), "::text[]")?,
            st.bind(
                items
                    .iter()
                    .map(|i| i.current.as_deref())
                    .collect::<Vec<_>>(),
                "::text[]",
            )?,
            st.bind(
                items.iter().map(|i| i.row_version).collect::<Vec<_>>(),
                "::int8[]",
            )?,
            st.bind(
                items.iter().map(|i| i.governed_at).collect::<Vec<_>>(),
                "::timestamptz[]",
            )?,
            st.bind(text(|i| i.status), "::text[]")?,
            st.bind(
                items
                    .iter()
                    .map(|i| i.superseded_by.as_deref())
                    .collect::<Vec<_>>(),
                "::text[]",
            )?,
        ];
        parts.push(format!(
            "ri AS (INSERT INTO govsync_review_item (event_id, batch_id, customer_id, data_type, region_code, \
             reason, priority, details, proposed, current_row, row_version, governed_at, status, superseded_by) \
             SELECT * FROM UNNEST({}) ON CONFLICT (event_id) DO NOTHING)",
            cols.join(", ")
        ));
    }
    Ok(parts)
}

/// The outbox part of [`write_statement`].
pub(super) fn outbox_part(
    st: &mut Statement,
    batch_id: &str,
    key: &PartitionKey,
    next: i64,
    msgs: &[OutMessage],
) -> SinkResult<String> {
    let fixed = [
        st.bind(batch_id, "::text")?,
        st.bind(key.group.as_str(), "::text")?,
        st.bind(key.topic.as_str(), "::text")?,
        st.bind(key.partition, "::int4")?,
        st.bind(next, "::int8")?,
    ];
    let cols = [
        st.bind((0..msgs.len() as i32).collect::<Vec<_>>(), "::int4[]")?,
        st.bind(
            msgs.iter().map(|m| m.topic.as_str()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            msgs.iter().map(|m| m.key.as_deref()).collect::<Vec<_>>(),
            "::bytea[]",
        )?,
        st.bind(
            msgs.iter()
                .map(|m| m.payload.as_deref())
                .collect::<Vec<_>>(),
            "::bytea[]",
        )?,
        st.bind(
            msgs.iter()
                .map(|m| encode_headers(&m.headers))
                .collect::<Vec<_>>(),
            "::bytea[]",
        )?,
    ];
    Ok(format!(
        "ob AS (INSERT INTO govsync_outbox (batch_id, seq, consumer_group, topic, partition_id, next_offset, \
         dest_topic, msg_key, msg_value, headers) \
         SELECT {}, u.seq, {}, {}, {}, {}, u.dest, u.k, u.v, u.h \
         FROM UNNEST({}) AS u(seq, dest, k, v, h))",
        fixed[0],
        fixed[1],
        fixed[2],
        fixed[3],
        fixed[4],
        cols.join(", ")
    ))
}

/// The ledger part of [`write_statement`].
fn ledger_part(st: &mut Statement, e: &LedgerEntry) -> SinkResult<String> {
    let v = [
        st.bind(e.batch_id.as_str(), "::text")?,
        st.bind(e.kind.as_str(), "::text")?,
        st.bind(e.group.as_str(), "::text")?,
        st.bind(e.topic.as_str(), "::text")?,
        st.bind(e.partition, "::int4")?,
        st.bind(e.first_offset, "::int8")?,
        st.bind(e.last_offset, "::int8")?,
        st.bind(e.records as i32, "::int4")?,
        st.bind(
            serde_json::to_string(&e.counts).unwrap_or_default(),
            "::text",
        )?,
        st.bind(e.started_at, "::timestamptz")?,
        st.bind(e.duration_ms, "::int8")?,
        st.bind(e.attempts, "::int4")?,
        st.bind(e.status.as_str(), "::text")?,
    ];
    Ok(format!(
        "led AS (INSERT INTO govsync_batch (batch_id, kind, consumer_group, topic, partition_id, first_offset, \
         last_offset, records, counts, started_at, duration_ms, attempts, status) VALUES ({}))",
        v.join(", ")
    ))
}

/// The whole of a batch's writes as one statement of data-modifying CTEs;
/// it returns the updated and inserted rows as stored. `None` when there is
/// nothing to write.
fn write_statement(sql: &Sql, w: &Writes<'_>) -> SinkResult<Option<Statement>> {
    let table = &sql.table;
    let mut st = Statement::default();
    let mut parts: Vec<String> = Vec::new();
    // (written rows as stored, the values given) per kind of row write.
    let mut compared: Vec<(&str, &str)> = Vec::new();
    if !w.log.is_empty() {
        let (part, placeholders) = log_part(&mut st, w.batch_id, w.log)?;
        parts.push(part);
        parts.push(supersede_from_log(&placeholders));
    } else if !w.review_log.is_empty() {
        // A bisected batch wrote its log inside the savepoint.
        parts.extend(review_parts(
            &mut st,
            &[],
            &crate::sink::supersessions(w.review_log),
        )?);
    }
    // Each written row, as stored (RETURNING, after the table's triggers),
    // is compared with the values it was given: the statement returns only
    // the customers whose row differs (none, unless something rewrote it).
    if !w.updates.is_empty() {
        let arrays = RowArrays::of(w.updates).bind(&mut st, false)?;
        parts.push(format!(
            "u_upd AS (SELECT * FROM UNNEST({arrays}) AS u({ROW_FIELDS})),\n\
             upd AS (UPDATE {table} AS c SET {} FROM u_upd AS u WHERE c.{} = u.customer_id RETURNING {})",
            sql.set_list,
            sql.map.key_quoted(),
            sql.returning
        ));
        compared.push(("upd", "u_upd"));
    }
    if !w.inserts.is_empty() {
        let arrays = RowArrays::of(w.inserts).bind(&mut st, true)?;
        parts.push(format!(
            "u_ins AS (SELECT * FROM UNNEST({arrays}) AS u({ROW_FIELDS}, name)),\n\
             ins AS (INSERT INTO {table} AS c ({}) SELECT {} FROM u_ins AS u RETURNING {})",
            sql.insert_columns, sql.insert_values, sql.returning
        ));
        compared.push(("ins", "u_ins"));
    }
    if !w.deletes.is_empty() {
        let ids = st.bind(w.deletes, "::text[]")?;
        parts.push(format!(
            "del AS (DELETE FROM {table} WHERE {} = ANY({ids}))",
            sql.map.key_quoted()
        ));
    }
    if !w.state.is_empty() {
        parts.push(state_part(&mut st, w.state)?);
    }
    parts.extend(review_parts(&mut st, w.review_items, &[])?);
    if let Some((key, next, msgs)) = w.outbox
        && !msgs.is_empty()
    {
        parts.push(outbox_part(&mut st, w.batch_id, key, next, msgs)?);
    }
    if let Some((key, upto)) = w.prune_outbox {
        let k = key_placeholders(&mut st, key)?;
        let upto = st.bind(upto, "::int8")?;
        parts.push(format!(
            "pr AS (DELETE FROM govsync_outbox WHERE consumer_group = {} AND topic = {} \
             AND partition_id = {} AND next_offset <= {upto})",
            k[0], k[1], k[2]
        ));
    }
    if let Some(e) = w.ledger {
        parts.push(ledger_part(&mut st, e)?);
    }
    if let Some((key, next)) = w.watermark {
        let k = key_placeholders(&mut st, key)?;
        let next = st.bind(next, "::int8")?;
        let batch = st.bind(w.batch_id, "::text")?;
        parts.push(format!(
            "wm AS (UPDATE govsync_watermark SET next_offset = {next}, batch_id = {batch}, updated_at = now() \
             WHERE consumer_group = {} AND topic = {} AND partition_id = {} AND next_offset <= {next})",
            k[0], k[1], k[2]
        ));
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let mut text = String::from("WITH ");
    text.push_str(&parts.join(",\n"));
    // One line with the count of rows written, then one per differing row.
    let written = if compared.is_empty() {
        "0".to_string()
    } else {
        let counts: Vec<String> = compared
            .iter()
            .map(|(stored, _)| format!("(SELECT count(*) FROM {stored})"))
            .collect();
        counts.join(" + ")
    };
    let _ = write!(text, "\nSELECT ({written})::int8, NULL::text");
    let fields = &sql.compared;
    for (stored, given) in &compared {
        let s_cols: Vec<String> = fields.iter().map(|f| format!("s.{f}")).collect();
        let g_cols: Vec<String> = fields.iter().map(|f| format!("g.{f}")).collect();
        let _ = write!(
            text,
            "\nUNION ALL SELECT NULL, s.customer_id FROM {stored} AS s JOIN {given} AS g \
             ON g.customer_id = s.customer_id WHERE ({}) IS DISTINCT FROM ({})",
            s_cols.join(", "),
            g_cols.join(", ")
        );
    }
    st.sql = text;
    Ok(Some(st))
}

fn key_placeholders(st: &mut Statement, key: &PartitionKey) -> SinkResult<[String; 3]> {
    Ok([
        st.bind(key.group.as_str(), "::text")?,
        st.bind(key.topic.as_str(), "::text")?,
        st.bind(key.partition, "::int4")?,
    ])
}

/// Runs the batch's write statement; returns what it compared.
pub(super) async fn write_all(
    tx: &mut Transaction<'static, Postgres>,
    sql: &Sql,
    w: &Writes<'_>,
) -> SinkResult<Stored> {
    let Some(st) = write_statement(sql, w)? else {
        return Ok(Stored::Compared {
            written: 0,
            differ: vec![],
        });
    };
    let lines = sqlx::query_with(AssertSqlSafe(st.sql), st.args)
        .fetch_all(&mut **tx)
        .await?;
    let mut written = 0;
    let mut differ = Vec::new();
    for r in &lines {
        match r.try_get::<Option<i64>, _>(0)? {
            Some(n) => written = n as usize,
            None => differ.extend(r.try_get::<Option<String>, _>(1)?),
        }
    }
    Ok(Stored::Compared { written, differ })
}
