//! The review items' and reviewers' decisions' statements on the two sqlx
//! databases (see `sqlx_common` for the shared mechanism; Oracle's are in
//! `oracle/review.rs`), and the reader of a stored item.

use sqlx::{Executor, IntoArguments};

use super::sqlx_common::{Dialect, dialect_sql};
use super::{REVIEW_ITEM_COLUMNS, SinkResult, StoredReviewItem};

/// Retention of the review state (`change_log.retention`): closed items
/// decided or raised before the horizon, and the decisions recorded before
/// it (an open item stays, however old).
pub const REVIEW_PRUNE: &str = "DELETE FROM govsync_review_item WHERE status <> 'open' \
    AND COALESCE(decided_at, created_at) < $1";
pub const DECISIONS_PRUNE: &str = "DELETE FROM govsync_review_decision WHERE applied_at < $1";

/// The statements, in one dialect's placeholders.
#[derive(Debug)]
pub struct ReviewSql {
    pub(super) review_items: String,
    pub(super) review_item: String,
    pub(super) item_lock: String,
    pub(super) decision_known: String,
    pub(super) decision_insert: String,
    pub(super) item_close: String,
    pub(super) log_source: String,
    pub(super) decisions_read: String,
    pub(super) review_prune: String,
    pub(super) decisions_prune: String,
}

impl ReviewSql {
    pub fn new<D: Dialect>() -> Self
    where
        for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
        D::Arguments: IntoArguments<D>,
    {
        let q = D::KIND == "sqlite";
        let t = |s: &str| dialect_sql(s, q);
        ReviewSql {
            review_items: t(&format!(
                "SELECT {REVIEW_ITEM_COLUMNS} FROM govsync_review_item WHERE {} \
                 ORDER BY created_at, event_id",
                D::REVIEW_STATUS_FILTER
            )),
            review_item: t(&format!(
                "SELECT {REVIEW_ITEM_COLUMNS} FROM govsync_review_item WHERE event_id = $1"
            )),
            item_lock: t(&format!(
                "SELECT event_id, customer_id, data_type, status, row_version, proposed, governed_at, \
                 reason FROM govsync_review_item WHERE event_id = $1{}",
                D::LOCK
            )),
            decision_known: t("SELECT 1 FROM govsync_review_decision WHERE decision_id = $1"),
            decision_insert: t(
                "INSERT INTO govsync_review_decision (decision_id, event_id, reviewer, decision, \
                 outcome, reason, comment, corrected, decided_at, batch_id, source_partition, \
                 source_offset) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            ),
            item_close: t(
                "UPDATE govsync_review_item SET status = $2, decided_by = $3, decided_at = $4, \
                 decision = $5, comment = $6, decision_id = $7, superseded_by = NULL \
                 WHERE event_id = $1",
            ),
            log_source: t("UPDATE govsync_change_log SET source = $2 WHERE event_id = $1"),
            review_prune: t(REVIEW_PRUNE),
            decisions_prune: t(DECISIONS_PRUNE),
            decisions_read: t(
                "SELECT decision_id, event_id, reviewer, decision, outcome, reason, comment, \
                 decided_at, applied_at FROM govsync_review_decision WHERE event_id = $1 \
                 ORDER BY applied_at, source_partition, source_offset",
            ),
        }
    }
}

/// A [`StoredReviewItem`] from a row of [`REVIEW_ITEM_COLUMNS`].
pub(super) fn stored_item<D: Dialect>(r: &D::Row) -> SinkResult<StoredReviewItem>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
{
    let text = |i| -> SinkResult<String> { Ok(D::get_text(r, i)?.unwrap_or_default()) };
    Ok(StoredReviewItem {
        event_id: text(0)?,
        customer_id: text(1)?,
        data_type: text(2)?,
        reason: text(3)?,
        priority: text(4)?,
        status: text(5)?,
        superseded_by: D::get_text(r, 6)?,
        row_version: D::get_opt_i64(r, 7)?,
        proposed: text(8)?,
        region_code: text(9)?,
        details: text(10)?,
        current_row: D::get_text(r, 11)?,
        governed_at: D::get_time(r, 12)?,
        created_at: D::get_time(r, 13)?,
        decided_by: D::get_text(r, 14)?,
        decided_at: D::get_time(r, 15)?,
        decision: D::get_text(r, 16)?,
        comment: D::get_text(r, 17)?,
        decision_id: D::get_text(r, 18)?,
    })
}
