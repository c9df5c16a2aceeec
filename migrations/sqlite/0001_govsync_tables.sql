-- govsync's own tables (see migrations/postgres for what each is for).
-- Times are TEXT in one fixed RFC 3339 form (UTC, microseconds), so they
-- sort and compare as strings.
CREATE TABLE IF NOT EXISTS govsync_change_log (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id         TEXT    NOT NULL,
    event_id         TEXT    NOT NULL UNIQUE,
    customer_id      TEXT    NOT NULL,
    data_type        TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    outcome          TEXT    NOT NULL,
    governed_at      TEXT    NOT NULL,
    before_image     TEXT,
    after_image      TEXT,
    source_partition INTEGER NOT NULL,
    source_offset    INTEGER NOT NULL,
    logged_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS govsync_change_log_customer ON govsync_change_log (customer_id, data_type, governed_at);
CREATE INDEX IF NOT EXISTS govsync_change_log_batch ON govsync_change_log (batch_id);

CREATE TABLE IF NOT EXISTS govsync_batch (
    batch_id       TEXT PRIMARY KEY,
    kind           TEXT    NOT NULL,
    consumer_group TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    partition_id   INTEGER NOT NULL,
    first_offset   INTEGER NOT NULL,
    last_offset    INTEGER NOT NULL,
    records        INTEGER NOT NULL,
    counts         TEXT    NOT NULL,
    started_at     TEXT    NOT NULL,
    duration_ms    INTEGER NOT NULL,
    attempts       INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    committed_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS govsync_batch_started ON govsync_batch (started_at);

CREATE TABLE IF NOT EXISTS govsync_watermark (
    consumer_group TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    partition_id   INTEGER NOT NULL,
    next_offset    INTEGER NOT NULL,
    batch_id       TEXT,
    updated_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (consumer_group, topic, partition_id)
);

CREATE TABLE IF NOT EXISTS govsync_outbox (
    batch_id       TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    consumer_group TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    partition_id   INTEGER NOT NULL,
    next_offset    INTEGER NOT NULL,
    dest_topic     TEXT    NOT NULL,
    msg_key        BLOB,
    msg_value      BLOB,
    headers        BLOB    NOT NULL,
    PRIMARY KEY (batch_id, seq)
);
CREATE INDEX IF NOT EXISTS govsync_outbox_partition ON govsync_outbox (consumer_group, topic, partition_id, next_offset);
