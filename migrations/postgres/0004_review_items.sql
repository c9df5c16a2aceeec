-- Review items (issue 15): one per record a batch sends to the review
-- topic, written in the batch's transaction, so the open items and the
-- review topic never disagree after a crash. A later applied result for the
-- same customer and data type supersedes the open ones; the decision
-- columns are filled when a reviewer decides.
CREATE TABLE IF NOT EXISTS govsync_review_item (
    event_id      VARCHAR(300) COLLATE "C" PRIMARY KEY,
    batch_id      VARCHAR(300) NOT NULL,
    customer_id   VARCHAR(64)  COLLATE "C" NOT NULL,
    data_type     VARCHAR(16)  NOT NULL,
    region_code   VARCHAR(32)  NOT NULL,
    reason        VARCHAR(32)  NOT NULL,
    priority      VARCHAR(16)  NOT NULL,
    details       TEXT         NOT NULL,
    proposed      TEXT         NOT NULL,
    current_row   TEXT,
    row_version   BIGINT,
    governed_at   TIMESTAMPTZ  NOT NULL,
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
    status        VARCHAR(16)  NOT NULL
        CHECK (status IN ('open', 'approved', 'rejected', 'corrected', 'superseded')),
    superseded_by VARCHAR(300),
    decided_by    VARCHAR(200),
    decided_at    TIMESTAMPTZ,
    decision      VARCHAR(16),
    comment       TEXT
);
-- The supersession's probe, and the queue of open items.
CREATE INDEX IF NOT EXISTS govsync_review_item_open
    ON govsync_review_item (customer_id, data_type) WHERE status = 'open';
