-- govsync's own tables. They live in the business database so that they
-- commit in the same transaction as the data.

-- One row per record govsync decided on (applied, flagged, held for review,
-- conflict, stale): the audit trail, the backup for rollback, the dedupe
-- window (event_id is unique) and the staleness state.
CREATE TABLE IF NOT EXISTS govsync_change_log (
    id               BIGSERIAL PRIMARY KEY,
    batch_id         VARCHAR(300) NOT NULL,
    event_id         VARCHAR(300) NOT NULL,
    customer_id      VARCHAR(64)  NOT NULL,
    data_type        VARCHAR(16)  NOT NULL,
    operation        VARCHAR(20)  NOT NULL,
    outcome          VARCHAR(16)  NOT NULL,
    governed_at      TIMESTAMPTZ  NOT NULL,
    before_image     TEXT,
    after_image      TEXT,
    source_partition INTEGER      NOT NULL,
    source_offset    BIGINT       NOT NULL,
    logged_at        TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT govsync_change_log_event_id UNIQUE (event_id)
);
CREATE INDEX IF NOT EXISTS govsync_change_log_customer ON govsync_change_log (customer_id, data_type, governed_at);
CREATE INDEX IF NOT EXISTS govsync_change_log_batch ON govsync_change_log (batch_id);

-- One row per batch.
CREATE TABLE IF NOT EXISTS govsync_batch (
    batch_id       VARCHAR(300) PRIMARY KEY,
    kind           VARCHAR(16)  NOT NULL,
    consumer_group VARCHAR(255) NOT NULL,
    topic          VARCHAR(255) NOT NULL,
    partition_id   INTEGER      NOT NULL,
    first_offset   BIGINT       NOT NULL,
    last_offset    BIGINT       NOT NULL,
    records        INTEGER      NOT NULL,
    counts         TEXT         NOT NULL,
    started_at     TIMESTAMPTZ  NOT NULL,
    duration_ms    BIGINT       NOT NULL,
    attempts       INTEGER      NOT NULL,
    status         VARCHAR(16)  NOT NULL,
    committed_at   TIMESTAMPTZ  NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS govsync_batch_started ON govsync_batch (started_at);

-- (group, topic, partition) -> next offset to apply. Advanced in the batch's
-- transaction; on assignment govsync seeks to max(Kafka committed, this).
CREATE TABLE IF NOT EXISTS govsync_watermark (
    consumer_group VARCHAR(255) NOT NULL,
    topic          VARCHAR(255) NOT NULL,
    partition_id   INTEGER      NOT NULL,
    next_offset    BIGINT       NOT NULL,
    batch_id       VARCHAR(300),
    updated_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition_id)
);

-- Review and dead-letter messages of committed batches, until Kafka holds
-- them: republished after a crash between the database and Kafka commits.
CREATE TABLE IF NOT EXISTS govsync_outbox (
    batch_id       VARCHAR(300) NOT NULL,
    seq            INTEGER      NOT NULL,
    consumer_group VARCHAR(255) NOT NULL,
    topic          VARCHAR(255) NOT NULL,
    partition_id   INTEGER      NOT NULL,
    next_offset    BIGINT       NOT NULL,
    dest_topic     VARCHAR(255) NOT NULL,
    msg_key        BYTEA,
    msg_value      BYTEA,
    headers        BYTEA        NOT NULL,
    PRIMARY KEY (batch_id, seq)
);
CREATE INDEX IF NOT EXISTS govsync_outbox_partition ON govsync_outbox (consumer_group, topic, partition_id, next_offset);
