//! Sessions and the batch transaction: [`OracleTx`] implements the
//! protocol's primitive steps ([`Tx`]) on one pooled session, each step a
//! call on a blocking thread. Oracle opens the transaction implicitly;
//! one dropped uncommitted is rolled back before its session goes back to
//! the pool.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use oracle::Connection;
use tokio::sync::OwnedSemaphorePermit;

use super::binds::{
    Binds, advance_binds, change_log_binds, check_storable, delete_binds, insert_binds, key_binds,
    ledger_binds, outbox_binds, outbox_read_binds, prune_binds, review_item_binds, row_state_binds,
    s, supersede_binds, update_binds,
};
use super::blocking::blocking;
use super::exec::{exec, exec_many, params, query, query_ids, read_watermark, row_from};
use super::sql::{
    BATCH_LOG_READ, BATCH_STATUS_SET, CHANGE_LOG_INSERT, LEDGER_INSERT, OUTBOX_INSERT,
    OUTBOX_PRUNE, OUTBOX_READ, REVIEW_ITEM_INSERT, REVIEW_SUPERSEDE, ROLLBACK_TO_SAVEPOINT,
    ROW_STATE_MERGE, SAVEPOINT, Sql, WATERMARK_ADVANCE, WATERMARK_CREATE,
};
use crate::event::Row;
use crate::message::{OutMessage, decode_headers};
use crate::sink::plan::RowWrite;
use crate::sink::{
    EventKey, LedgerEntry, LogEntry, LoggedChange, PartitionKey, ReviewItem, RowState, SinkError,
    SinkResult, Supersede, Tx,
};

/// What every checked-out session gets (client-side attributes: no round
/// trip of their own).
#[derive(Debug, Clone)]
pub(super) struct SessionSetup {
    /// `database.schema`, upper-cased as Oracle does for an unquoted name.
    pub(super) schema: Option<String>,
    /// `database.statement_timeout`, as the call timeout of each round trip.
    pub(super) call_timeout: Duration,
}

impl SessionSetup {
    pub(super) fn apply(&self, conn: &Connection) -> SinkResult<()> {
        if let Some(schema) = &self.schema {
            // ALTER SESSION SET CURRENT_SCHEMA, sent with the next call.
            conn.set_current_schema(schema)?;
        }
        conn.set_call_timeout(Some(self.call_timeout))?;
        conn.set_module("govsync")?;
        Ok(())
    }
}

/// A session checked out for one transaction.
pub(super) struct Session {
    pub(super) conn: Connection,
    /// A transaction may be open: roll it back before the session returns.
    pub(super) open: bool,
    /// Released after the session went back to the pool (fields drop in
    /// order).
    pub(super) _slot: OwnedSemaphorePermit,
}

impl Drop for Session {
    /// Runs on a blocking thread (see [`OracleTx`]'s `Drop`).
    fn drop(&mut self) {
        if self.open
            && let Err(e) = self.conn.rollback()
        {
            tracing::warn!(error = %e, "rolling back an abandoned Oracle transaction failed");
        }
    }
}

pub struct OracleTx {
    /// `None` once committed. Shared with the blocking job in flight, if
    /// any, so the session outlives a cancelled call; its mutex keeps one
    /// call at a time on the session.
    pub(super) session: Option<Arc<Mutex<Session>>>,
    pub(super) sql: Arc<Sql>,
}

impl OracleTx {
    /// Runs `f` on this transaction's session, on a blocking thread.
    async fn call<T, F>(&self, f: F) -> SinkResult<T>
    where
        F: FnOnce(&Connection, &Sql) -> SinkResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let session = self
            .session
            .clone()
            .ok_or_else(|| SinkError::Fatal("the Oracle transaction is already finished".into()))?;
        let sql = self.sql.clone();
        blocking(move || {
            let s = session.lock().map_err(|_| {
                SinkError::Fatal("an earlier call on this Oracle session panicked".into())
            })?;
            f(&s.conn, &sql)
        })
        .await
    }
}

impl Drop for OracleTx {
    /// An uncommitted transaction is rolled back; the rollback is a round
    /// trip, so it runs on a blocking thread, never here.
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || drop(session));
                }
                Err(_) => drop(session),
            }
        }
    }
}

#[async_trait]
impl Tx for OracleTx {
    fn table_map(&self) -> Arc<crate::sink::table::TableMap> {
        self.sql.map.clone()
    }

    async fn lock_watermark(&mut self, key: &PartitionKey) -> SinkResult<i64> {
        let key = key.clone();
        self.call(move |conn, sql| {
            if let Some(w) = read_watermark(conn, &sql.watermark_lock, &key)? {
                return Ok(w);
            }
            match exec(conn, WATERMARK_CREATE, &key_binds(&key)) {
                Ok(_) => {}
                // Another session created it first (and committed): fine.
                Err(SinkError::Record { code, .. }) if code.as_deref() == Some("ORA-00001") => {}
                Err(e) => return Err(e),
            }
            read_watermark(conn, &sql.watermark_lock, &key)?.ok_or_else(|| {
                SinkError::Fatal("the govsync_watermark row vanished after its MERGE".into())
            })
        })
        .await
    }

    async fn read_outbox(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> SinkResult<Vec<OutMessage>> {
        let binds = outbox_read_binds(key, from, to);
        let rows = self
            .call(move |conn, _| {
                query(conn, OUTBOX_READ, &params(&binds), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<Vec<u8>>>(1)?,
                        r.get::<_, Option<Vec<u8>>>(2)?,
                        r.get::<_, Option<Vec<u8>>>(3)?,
                    ))
                })
            })
            .await?;
        rows.into_iter()
            .map(|(topic, key, payload, headers)| {
                Ok(OutMessage {
                    topic,
                    key,
                    payload,
                    headers: decode_headers(&headers.unwrap_or_default()).ok_or_else(|| {
                        SinkError::Fatal("corrupt headers in govsync_outbox".into())
                    })?,
                })
            })
            .collect()
    }

    async fn lock_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>> {
        let ids = ids.to_vec();
        let rows = self
            .call(move |conn, sql| {
                query_ids(conn, &sql.lock_rows, &ids, |r| row_from(&sql.reads, r))
            })
            .await?;
        Ok(rows.into_iter().collect())
    }

    async fn read_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>> {
        let ids = ids.to_vec();
        let rows = self
            .call(move |conn, sql| {
                query_ids(conn, &sql.read_rows, &ids, |r| row_from(&sql.reads, r))
            })
            .await?;
        Ok(rows.into_iter().collect())
    }

    async fn seen_events(&mut self, events: &[EventKey]) -> SinkResult<HashSet<String>> {
        let ids: Vec<String> = events.iter().map(|(e, _)| e.clone()).collect();
        let found = self
            .call(move |conn, sql| {
                query_ids(conn, &sql.seen_events, &ids, |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, NaiveDateTime>(1)?))
                })
            })
            .await?;
        let wanted: HashSet<(&str, DateTime<Utc>)> =
            events.iter().map(|(e, t)| (e.as_str(), *t)).collect();
        Ok(found
            .into_iter()
            .filter(|(e, t)| wanted.contains(&(e.as_str(), t.and_utc())))
            .map(|(e, _)| e)
            .collect())
    }

    async fn row_states(&mut self, ids: &[String]) -> SinkResult<Vec<RowState>> {
        let ids = ids.to_vec();
        self.call(move |conn, sql| {
            query_ids(conn, &sql.row_states, &ids, |r| {
                let at = |i: usize| -> oracle::Result<Option<DateTime<Utc>>> {
                    Ok(r.get::<_, Option<NaiveDateTime>>(i)?.map(|t| t.and_utc()))
                };
                Ok(RowState {
                    customer_id: r.get(0)?,
                    governed_at: [at(1)?, at(2)?, at(3)?],
                    version: None,
                })
            })
        })
        .await
    }

    async fn write_state(&mut self, state: &[RowState]) -> SinkResult<()> {
        let rows = row_state_binds(state);
        self.call(move |conn, _| exec_many(conn, ROW_STATE_MERGE, &rows).map(drop))
            .await
    }

    /// The supersession first, so it cannot reach the items this call
    /// inserts (they carry their own status); then the items whose event
    /// id is not stored yet, one array INSERT (see `REVIEW_ITEM_INSERT`
    /// for why not a MERGE). One blocking call, three round trips at most.
    async fn write_review(
        &mut self,
        items: &[ReviewItem],
        supersede: &[Supersede],
    ) -> SinkResult<()> {
        let supersede = supersede_binds(supersede);
        let items = items.to_vec();
        self.call(move |conn, sql| {
            exec_many(conn, REVIEW_SUPERSEDE, &supersede)?;
            let ids: Vec<String> = items.iter().map(|it| it.event_id.clone()).collect();
            let present: HashSet<String> =
                query_ids(conn, &sql.review_items_present, &ids, |r| r.get(0))?
                    .into_iter()
                    .collect();
            exec_many(
                conn,
                REVIEW_ITEM_INSERT,
                &review_item_binds(&items, &present),
            )?;
            Ok(())
        })
        .await
    }

    async fn savepoint(&mut self) -> SinkResult<()> {
        self.call(|conn, _| exec(conn, SAVEPOINT, &[]).map(drop))
            .await
    }

    async fn rollback_to_savepoint(&mut self) -> SinkResult<()> {
        self.call(|conn, _| exec(conn, ROLLBACK_TO_SAVEPOINT, &[]).map(drop))
            .await
    }

    /// Oracle has no RELEASE SAVEPOINT: the next SAVEPOINT of the same name
    /// moves it, and commit ends it.
    async fn release_savepoint(&mut self) -> SinkResult<()> {
        Ok(())
    }

    async fn write_changes(
        &mut self,
        batch_id: &str,
        log: &[LogEntry],
        updates: &[RowWrite],
        inserts: &[RowWrite],
        deletes: &[String],
    ) -> SinkResult<()> {
        check_storable(&self.sql.map, updates)?;
        check_storable(&self.sql.map, inserts)?;
        let log = change_log_binds(batch_id, log);
        let n_updates = updates.len() as u64;
        let updates = update_binds(&self.sql, updates);
        let inserts = insert_binds(&self.sql, inserts);
        let deletes = delete_binds(deletes);
        self.call(move |conn, sql| {
            exec_many(conn, CHANGE_LOG_INSERT, &log)?;
            let updated = exec_many(conn, &sql.update_rows, &updates)?;
            if updated != n_updates {
                return Err(SinkError::Verification(format!(
                    "updated {updated} rows, expected {n_updates}"
                )));
            }
            exec_many(conn, &sql.insert_rows, &inserts)?;
            exec_many(conn, &sql.delete_rows, &deletes)?;
            Ok(())
        })
        .await
    }

    async fn write_outbox(
        &mut self,
        batch_id: &str,
        key: &PartitionKey,
        next_offset: i64,
        msgs: &[OutMessage],
    ) -> SinkResult<()> {
        let rows = outbox_binds(batch_id, key, next_offset, msgs);
        self.call(move |conn, _| exec_many(conn, OUTBOX_INSERT, &rows).map(drop))
            .await
    }

    async fn prune_outbox(&mut self, key: &PartitionKey, upto: i64) -> SinkResult<()> {
        let binds = prune_binds(key, upto);
        self.call(move |conn, _| exec(conn, OUTBOX_PRUNE, &binds).map(drop))
            .await
    }

    async fn write_ledger(&mut self, e: &LedgerEntry) -> SinkResult<()> {
        let binds = ledger_binds(e);
        self.call(move |conn, _| exec(conn, LEDGER_INSERT, &binds).map(drop))
            .await
    }

    async fn advance_watermark(
        &mut self,
        key: &PartitionKey,
        next: i64,
        batch_id: &str,
    ) -> SinkResult<()> {
        let binds = advance_binds(key, next, batch_id);
        self.call(move |conn, _| exec(conn, WATERMARK_ADVANCE, &binds).map(drop))
            .await
    }

    async fn read_batch_log(&mut self, batch_id: &str) -> SinkResult<Vec<LoggedChange>> {
        let binds: Binds = vec![("p_batch_id", s(batch_id))];
        let parse = |s: Option<String>| {
            s.and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(serde_json::Value::Null)
        };
        self.call(move |conn, _| {
            query(conn, BATCH_LOG_READ, &params(&binds), |r| {
                Ok(LoggedChange {
                    event_id: r.get(0)?,
                    customer_id: r.get(1)?,
                    data_type: r.get(2)?,
                    operation: r.get(3)?,
                    before: parse(r.get(4)?),
                    after: parse(r.get(5)?),
                })
            })
        })
        .await
    }

    async fn lock_review_item(
        &mut self,
        event_id: &str,
    ) -> SinkResult<Option<crate::sink::LockedItem>> {
        let binds: Binds = vec![("p_event_id", s(event_id))];
        let found = self
            .call(move |conn, sql| {
                query(
                    conn,
                    &sql.item_lock,
                    &params(&binds),
                    super::review::locked_item,
                )
            })
            .await?;
        match found.into_iter().next() {
            Some((_, None)) => Err(SinkError::Fatal(format!(
                "review item {event_id} has no governed_at"
            ))),
            Some((item, Some(_))) => Ok(Some(item)),
            None => Ok(None),
        }
    }

    async fn decision_known(&mut self, decision_id: &str) -> SinkResult<bool> {
        let binds: Binds = vec![("p_decision_id", s(decision_id))];
        let found = self
            .call(move |conn, _| {
                query(conn, super::review::DECISION_KNOWN, &params(&binds), |_| {
                    Ok(())
                })
            })
            .await?;
        Ok(!found.is_empty())
    }

    async fn write_decisions(
        &mut self,
        batch_id: &str,
        records: &[crate::sink::DecisionRecord],
    ) -> SinkResult<()> {
        use super::review::{
            DECISION_INSERT, ITEM_CLOSE, LOG_SOURCE, decision_insert_binds, item_close_binds,
            log_source_binds,
        };
        let mut statements: Vec<(&'static str, Binds)> = Vec::new();
        for d in records {
            statements.push((DECISION_INSERT, decision_insert_binds(batch_id, d)));
            if let Some(status) = d.close_item {
                statements.push((ITEM_CLOSE, item_close_binds(d, status)));
            }
            if d.logged {
                statements.push((LOG_SOURCE, log_source_binds(d)));
            }
        }
        self.call(move |conn, _| {
            for (text, binds) in &statements {
                exec(conn, text, binds)?;
            }
            Ok(())
        })
        .await
    }

    async fn set_batch_status(
        &mut self,
        batch_id: &str,
        status: &str,
    ) -> SinkResult<Option<String>> {
        let lock: Binds = vec![("p_batch_id", s(batch_id))];
        let set: Binds = vec![("p_status", s(status)), ("p_batch_id", s(batch_id))];
        self.call(move |conn, sql| {
            let prev = query(conn, &sql.batch_status_lock, &params(&lock), |r| {
                r.get::<_, String>(0)
            })?
            .into_iter()
            .next();
            exec(conn, BATCH_STATUS_SET, &set)?;
            Ok(prev)
        })
        .await
    }

    async fn commit(mut self: Box<Self>) -> SinkResult<()> {
        let session = self
            .session
            .take()
            .ok_or_else(|| SinkError::Fatal("the Oracle transaction is already finished".into()))?;
        blocking(move || {
            let mut s = session.lock().map_err(|_| {
                SinkError::Fatal("an earlier call on this Oracle session panicked".into())
            })?;
            s.conn.commit()?;
            s.open = false;
            Ok(())
        })
        .await
    }
}
