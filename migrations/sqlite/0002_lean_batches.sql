-- Batches that cost the same however long govsync has run (issue 13; see
-- migrations/postgres/0002_lean_batches.sql): staleness from
-- govsync_row_state instead of the change log's history, a duplicate is
-- the same event_id with the same governed_at, no per-customer index on
-- the change log. Retention: the processor deletes what is older than
-- `change_log.retention` every hour (counted from when a row was logged).

CREATE TABLE IF NOT EXISTS govsync_row_state (
    customer_id         TEXT PRIMARY KEY,
    address_governed_at TEXT,
    id_card_governed_at TEXT,
    phone_governed_at   TEXT
);
INSERT OR IGNORE INTO govsync_row_state (customer_id, address_governed_at, id_card_governed_at, phone_governed_at)
SELECT customer_id,
       max(CASE WHEN data_type = 'address' THEN governed_at END),
       max(CASE WHEN data_type = 'id_card' THEN governed_at END),
       max(CASE WHEN data_type = 'phone' THEN governed_at END)
FROM govsync_change_log
WHERE outcome IN ('applied', 'flagged')
GROUP BY customer_id;

CREATE TABLE govsync_change_log_v2 (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id         TEXT    NOT NULL,
    event_id         TEXT    NOT NULL,
    customer_id      TEXT    NOT NULL,
    data_type        TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    outcome          TEXT    NOT NULL,
    governed_at      TEXT    NOT NULL,
    before_image     TEXT,
    after_image      TEXT,
    source_partition INTEGER NOT NULL,
    source_offset    INTEGER NOT NULL,
    logged_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (event_id, governed_at)
);
INSERT INTO govsync_change_log_v2 SELECT * FROM govsync_change_log ORDER BY id;
DROP TABLE govsync_change_log;
ALTER TABLE govsync_change_log_v2 RENAME TO govsync_change_log;
CREATE INDEX IF NOT EXISTS govsync_change_log_batch ON govsync_change_log (batch_id);
CREATE INDEX IF NOT EXISTS govsync_change_log_logged ON govsync_change_log (logged_at);
