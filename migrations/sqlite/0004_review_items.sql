-- Review items (issue 15): one per record a batch sends to the review
-- topic, written in the batch's transaction, so the open items and the
-- review topic never disagree after a crash. A later applied result for the
-- same customer and data type supersedes the open ones; the decision
-- columns are filled when a reviewer decides. Times are RFC 3339 text.
CREATE TABLE IF NOT EXISTS govsync_review_item (
    event_id      TEXT PRIMARY KEY,
    batch_id      TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    data_type     TEXT NOT NULL,
    region_code   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    priority      TEXT NOT NULL,
    details       TEXT NOT NULL,
    proposed      TEXT NOT NULL,
    current_row   TEXT,
    row_version   INTEGER,
    governed_at   TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    status        TEXT NOT NULL
        CHECK (status IN ('open', 'approved', 'rejected', 'corrected', 'superseded')),
    superseded_by TEXT,
    decided_by    TEXT,
    decided_at    TEXT,
    decision      TEXT,
    comment       TEXT
);
CREATE INDEX IF NOT EXISTS govsync_review_item_open
    ON govsync_review_item (customer_id, data_type) WHERE status = 'open';
