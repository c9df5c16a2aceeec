//! The review items' reads and the decision applier's statements on
//! Oracle (see `sink::sqlx_common` for PostgreSQL and SQLite). One
//! statement per decision: decisions are made by people, a few per second
//! at most. Times are read as UTC (`SYS_EXTRACT_UTC`); the reserved word
//! COMMENT is always the quoted column "COMMENT".

use chrono::{DateTime, NaiveDateTime, Utc};

use super::binds::{Bind, Binds, int, s};
use crate::sink::{DecisionRecord, LockedItem, StoredDecision, StoredReviewItem};

/// The columns of a [`StoredReviewItem`], in its fields' order.
macro_rules! item_columns {
    () => {
        "event_id, customer_id, data_type, reason, priority, status, superseded_by, row_version, \
         proposed, region_code, details, current_row, SYS_EXTRACT_UTC(governed_at), \
         SYS_EXTRACT_UTC(created_at), decided_by, SYS_EXTRACT_UTC(decided_at), decision, \"COMMENT\", \
         decision_id FROM govsync_review_item"
    };
}

/// Review items, oldest first, of one status or all (a NULL status).
pub const REVIEW_ITEMS_LIST: &str = concat!(
    "SELECT ",
    item_columns!(),
    " WHERE (:p_status IS NULL OR status = :p_status_eq) ORDER BY created_at, event_id"
);

pub const REVIEW_ITEM_ONE: &str =
    concat!("SELECT ", item_columns!(), " WHERE event_id = :p_event_id");

/// A review item locked for its decision, waiting at most `wait` seconds.
pub fn item_lock_sql(wait: u64) -> String {
    format!(
        "SELECT event_id, customer_id, data_type, status, row_version, proposed, \
         SYS_EXTRACT_UTC(governed_at), reason FROM govsync_review_item WHERE event_id = :p_event_id \
         FOR UPDATE WAIT {wait}"
    )
}

pub const DECISION_KNOWN: &str =
    "SELECT 1 FROM govsync_review_decision WHERE decision_id = :p_decision_id";

/// The CLOBs bind last.
pub const DECISION_INSERT: &str = "INSERT INTO govsync_review_decision (decision_id, event_id, \
    reviewer, decision, outcome, decided_at, batch_id, source_partition, source_offset, reason, \
    \"COMMENT\", corrected) VALUES (:p_decision_id, :p_event_id, :p_reviewer, :p_decision, :p_outcome, \
    :p_decided_at, :p_batch_id, :p_partition, :p_offset, :p_reason, :p_comment, :p_corrected)";

/// Closes an item. Its comment is copied from the decision's row, written
/// just before in the same transaction, rather than bound again: a long
/// CLOB bind must come after every other bind (ORA-24816), and the WHERE
/// clause's bind comes last.
pub const ITEM_CLOSE: &str = "UPDATE govsync_review_item SET status = :p_status, decided_by = \
    :p_reviewer, decided_at = :p_decided_at, decision = :p_decision, decision_id = :p_decision_id, \
    \"COMMENT\" = (SELECT d.\"COMMENT\" FROM govsync_review_decision d WHERE d.decision_id = \
    :p_decision_id_again), superseded_by = NULL WHERE event_id = :p_event_id";

pub const LOG_SOURCE: &str =
    "UPDATE govsync_change_log SET source = :p_source WHERE event_id = :p_event_id";

pub const DECISIONS_READ: &str = "SELECT decision_id, event_id, reviewer, decision, outcome, reason, \
    \"COMMENT\", SYS_EXTRACT_UTC(decided_at), SYS_EXTRACT_UTC(applied_at) FROM govsync_review_decision \
    WHERE event_id = :p_event_id ORDER BY applied_at, source_partition, source_offset";

/// Retention (see `sqlx_review::REVIEW_PRUNE`).
pub const REVIEW_PRUNE: &str = "DELETE FROM govsync_review_item WHERE status <> 'open' \
    AND COALESCE(decided_at, created_at) < :p_horizon";
pub const DECISIONS_PRUNE: &str =
    "DELETE FROM govsync_review_decision WHERE applied_at < :p_horizon";

fn text(v: &Option<String>) -> Bind {
    Bind::Text(v.clone())
}

pub fn decision_insert_binds(batch_id: &str, d: &DecisionRecord) -> Binds {
    vec![
        ("p_decision_id", s(&d.decision_id)),
        ("p_event_id", s(&d.event_id)),
        ("p_reviewer", s(&d.reviewer)),
        ("p_decision", s(&d.decision)),
        ("p_outcome", s(d.outcome)),
        ("p_decided_at", Bind::Time(d.decided_at)),
        ("p_batch_id", s(batch_id)),
        ("p_partition", int(d.partition)),
        ("p_offset", int(d.offset)),
        ("p_reason", text(&d.reason)),
        ("p_comment", text(&d.comment)),
        ("p_corrected", text(&d.corrected)),
    ]
}

pub fn item_close_binds(d: &DecisionRecord, status: &str) -> Binds {
    vec![
        ("p_status", s(status)),
        ("p_reviewer", s(&d.reviewer)),
        ("p_decided_at", Bind::Time(d.decided_at)),
        ("p_decision", s(&d.decision)),
        ("p_decision_id", s(&d.decision_id)),
        ("p_decision_id_again", s(&d.decision_id)),
        ("p_event_id", s(&d.event_id)),
    ]
}

pub fn log_source_binds(d: &DecisionRecord) -> Binds {
    vec![
        ("p_source", s(&crate::sink::reviewer_source(&d.reviewer))),
        ("p_event_id", s(&d.decision_id)),
    ]
}

fn utc(t: Option<NaiveDateTime>) -> Option<DateTime<Utc>> {
    t.map(|t| t.and_utc())
}

/// A row of [`REVIEW_ITEMS_LIST`] or [`REVIEW_ITEM_ONE`].
pub fn stored_item(r: &oracle::Row) -> oracle::Result<StoredReviewItem> {
    // CLOBs, NOT NULL (never empty: JSON).
    let clob = |i: usize| -> oracle::Result<String> {
        Ok(r.get::<_, Option<String>>(i)?.unwrap_or_default())
    };
    Ok(StoredReviewItem {
        event_id: r.get(0)?,
        customer_id: r.get(1)?,
        data_type: r.get(2)?,
        reason: r.get(3)?,
        priority: r.get(4)?,
        status: r.get(5)?,
        superseded_by: r.get(6)?,
        row_version: r.get(7)?,
        proposed: clob(8)?,
        region_code: r.get(9)?,
        details: clob(10)?,
        current_row: r.get(11)?,
        governed_at: utc(r.get(12)?),
        created_at: utc(r.get(13)?),
        decided_by: r.get(14)?,
        decided_at: utc(r.get(15)?),
        decision: r.get(16)?,
        comment: r.get(17)?,
        decision_id: r.get(18)?,
    })
}

/// A row of [`item_lock_sql`].
pub fn locked_item(r: &oracle::Row) -> oracle::Result<(LockedItem, Option<NaiveDateTime>)> {
    let governed: Option<NaiveDateTime> = r.get(6)?;
    Ok((
        LockedItem {
            event_id: r.get(0)?,
            customer_id: r.get(1)?,
            data_type: r.get(2)?,
            status: r.get(3)?,
            row_version: r.get(4)?,
            proposed: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            governed_at: governed.map(|t| t.and_utc()).unwrap_or_default(),
            reason: r.get(7)?,
        },
        governed,
    ))
}

/// A row of [`DECISIONS_READ`].
pub fn stored_decision(r: &oracle::Row) -> oracle::Result<StoredDecision> {
    Ok(StoredDecision {
        decision_id: r.get(0)?,
        event_id: r.get(1)?,
        reviewer: r.get(2)?,
        decision: r.get(3)?,
        outcome: r.get(4)?,
        reason: r.get(5)?,
        comment: r.get(6)?,
        decided_at: utc(r.get(7)?),
        applied_at: utc(r.get(8)?),
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::placeholders;
    use super::*;

    fn record() -> DecisionRecord {
        DecisionRecord {
            decision_id: "d1".into(),
            event_id: "e1".into(),
            reviewer: "wang.li".into(),
            decision: "approve".into(),
            outcome: "applied",
            reason: None,
            comment: Some("ok".into()),
            corrected: None,
            decided_at: None,
            partition: 0,
            offset: 7,
            close_item: Some("approved"),
            logged: true,
        }
    }

    fn names(b: &Binds) -> Vec<String> {
        b.iter().map(|(n, _)| n.to_string()).collect()
    }

    #[test]
    fn each_statement_binds_its_placeholders_in_order() {
        let d = record();
        assert_eq!(
            placeholders(DECISION_INSERT),
            names(&decision_insert_binds("b", &d))
        );
        assert_eq!(
            placeholders(ITEM_CLOSE),
            names(&item_close_binds(&d, "approved"))
        );
        assert_eq!(placeholders(LOG_SOURCE), names(&log_source_binds(&d)));
        assert_eq!(placeholders(DECISION_KNOWN), ["p_decision_id"]);
        assert_eq!(placeholders(REVIEW_PRUNE), ["p_horizon"]);
        assert_eq!(placeholders(DECISIONS_PRUNE), ["p_horizon"]);
        assert_eq!(placeholders(DECISIONS_READ), ["p_event_id"]);
        assert_eq!(placeholders(REVIEW_ITEM_ONE), ["p_event_id"]);
        assert_eq!(placeholders(REVIEW_ITEMS_LIST), ["p_status", "p_status_eq"]);
        assert_eq!(placeholders(&item_lock_sql(3)), ["p_event_id"]);
        assert!(item_lock_sql(3).ends_with("FOR UPDATE WAIT 3"));
    }

    #[test]
    fn comment_is_always_quoted_and_no_statement_ends_in_a_semicolon() {
        for text in [
            REVIEW_ITEMS_LIST,
            REVIEW_ITEM_ONE,
            DECISION_INSERT,
            ITEM_CLOSE,
            DECISIONS_READ,
        ] {
            let unquoted = text
                .replace("\"COMMENT\"", "")
                .replace(":p_comment", "")
                .to_lowercase();
            assert!(!unquoted.contains("comment"), "{text}");
            assert!(!text.trim_end().ends_with(';'), "{text}");
        }
        // The item's columns: 19, in StoredReviewItem's order.
        let cols = REVIEW_ITEM_ONE
            .trim_start_matches("SELECT ")
            .split(" FROM ")
            .next()
            .unwrap();
        assert_eq!(cols.split(", ").count(), 19, "{cols}");
        assert!(cols.ends_with("\"COMMENT\", decision_id"), "{cols}");
    }
}
