-- Reviewers' decisions (issue 15); see migrations/postgres/0005. COMMENT
-- is quoted (a reserved word), the CLOBs are the last columns. A re-run
-- after a partial failure skips what exists (ORA-00955, ORA-01408,
-- ORA-01430).
CREATE TABLE govsync_review_decision (
    decision_id      VARCHAR2(100 CHAR) NOT NULL,
    event_id         VARCHAR2(300 CHAR) NOT NULL,
    reviewer         VARCHAR2(200 CHAR) NOT NULL,
    decision         VARCHAR2(16 CHAR)  NOT NULL,
    outcome          VARCHAR2(16 CHAR)  NOT NULL,
    decided_at       TIMESTAMP(6) WITH TIME ZONE,
    applied_at       TIMESTAMP(6) WITH TIME ZONE DEFAULT SYSTIMESTAMP NOT NULL,
    batch_id         VARCHAR2(300 CHAR) NOT NULL,
    source_partition NUMBER(10)         NOT NULL,
    source_offset    NUMBER(19)         NOT NULL,
    reason           CLOB,
    "COMMENT"        CLOB,
    corrected        CLOB,
    CONSTRAINT govsync_review_decision_pk PRIMARY KEY (decision_id),
    CONSTRAINT govsync_review_decision_outcome CHECK (outcome IN ('applied', 'refused'))
);
CREATE INDEX govsync_review_decision_event ON govsync_review_decision (event_id);
ALTER TABLE govsync_review_item ADD (decision_id VARCHAR2(100 CHAR));
ALTER TABLE govsync_change_log ADD (source VARCHAR2(220 CHAR));
