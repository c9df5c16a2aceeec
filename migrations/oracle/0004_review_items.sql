-- Review items (issue 15; see migrations/postgres/0004_review_items.sql):
-- one per record a batch sends to the review topic, written in the batch's
-- transaction, so the open items and the review topic never disagree after
-- a crash. A later applied result for the same customer and data type
-- supersedes the open ones; the decision columns are filled when a
-- reviewer decides.
--
-- The JSON texts are CLOBs and the last columns, as in the change log, so
-- that large values bind last. COMMENT is an Oracle reserved word: the
-- column is the quoted upper-case "COMMENT" (write it quoted in SQL).
-- A re-run after a partial failure skips what exists (ORA-00955, ORA-01408).
CREATE TABLE govsync_review_item (
    event_id      VARCHAR2(300 CHAR) NOT NULL,
    batch_id      VARCHAR2(300 CHAR) NOT NULL,
    customer_id   VARCHAR2(64 CHAR)  NOT NULL,
    data_type     VARCHAR2(16 CHAR)  NOT NULL,
    region_code   VARCHAR2(32 CHAR)  NOT NULL,
    reason        VARCHAR2(32 CHAR)  NOT NULL,
    priority      VARCHAR2(16 CHAR)  NOT NULL,
    row_version   NUMBER(19),
    governed_at   TIMESTAMP(6) WITH TIME ZONE NOT NULL,
    created_at    TIMESTAMP(6) WITH TIME ZONE DEFAULT SYSTIMESTAMP NOT NULL,
    status        VARCHAR2(16 CHAR)  NOT NULL,
    superseded_by VARCHAR2(300 CHAR),
    decided_by    VARCHAR2(200 CHAR),
    decided_at    TIMESTAMP(6) WITH TIME ZONE,
    decision      VARCHAR2(16 CHAR),
    details       CLOB NOT NULL,
    proposed      CLOB NOT NULL,
    current_row   CLOB,
    "COMMENT"     CLOB,
    CONSTRAINT govsync_review_item_pk PRIMARY KEY (event_id),
    CONSTRAINT govsync_review_item_status
        CHECK (status IN ('open', 'approved', 'rejected', 'corrected', 'superseded'))
);
-- The supersession's probe, and the queue of open items. Oracle has no
-- partial index; a function-based one on (CASE WHEN status = 'open' THEN
-- customer_id END, ...) would hold only the open items, but the optimizer
-- uses it only for queries that repeat those CASE expressions, which every
-- reviewer's tool would have to know. A plain index with the status serves
-- `status = 'open' AND customer_id = ... AND data_type = ...` as written;
-- the decided items it also holds are few per customer and data type.
CREATE INDEX govsync_review_item_open ON govsync_review_item (customer_id, data_type, status);
