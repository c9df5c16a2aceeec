-- Reviewers' decisions (issue 15); see migrations/postgres/0005. Times are
-- RFC 3339 text.
CREATE TABLE IF NOT EXISTS govsync_review_decision (
    decision_id      TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    reviewer         TEXT NOT NULL,
    decision         TEXT NOT NULL,
    outcome          TEXT NOT NULL CHECK (outcome IN ('applied', 'refused')),
    reason           TEXT,
    comment          TEXT,
    corrected        TEXT,
    decided_at       TEXT,
    applied_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    batch_id         TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS govsync_review_decision_event ON govsync_review_decision (event_id);
ALTER TABLE govsync_review_item ADD COLUMN decision_id TEXT;
ALTER TABLE govsync_change_log ADD COLUMN source TEXT;
