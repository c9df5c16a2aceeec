-- Batches that cost the same however long govsync has run (issue 13; see
-- migrations/postgres/0002_lean_batches.sql): staleness from
-- govsync_row_state instead of the change log's history, a duplicate is
-- the same event_id with the same governed_at, no per-customer index on
-- the change log. Retention: every hour the processor deletes the
-- change-log rows logged longer than `change_log.retention` ago.
-- Partitioning is a separately licensed option before 23ai Free, so
-- govsync does not assume it; a DBA who has it can partition
-- govsync_change_log by logged_at and drop old partitions instead.

CREATE TABLE govsync_row_state (
    customer_id         VARCHAR2(64 CHAR) NOT NULL,
    address_governed_at TIMESTAMP(6) WITH TIME ZONE,
    id_card_governed_at TIMESTAMP(6) WITH TIME ZONE,
    phone_governed_at   TIMESTAMP(6) WITH TIME ZONE,
    CONSTRAINT govsync_row_state_pk PRIMARY KEY (customer_id)
);
INSERT INTO govsync_row_state (customer_id, address_governed_at, id_card_governed_at, phone_governed_at)
SELECT customer_id,
       MAX(CASE WHEN data_type = 'address' THEN governed_at END),
       MAX(CASE WHEN data_type = 'id_card' THEN governed_at END),
       MAX(CASE WHEN data_type = 'phone' THEN governed_at END)
FROM govsync_change_log
WHERE outcome IN ('applied', 'flagged')
GROUP BY customer_id;
DROP INDEX govsync_change_log_customer;
ALTER TABLE govsync_change_log DROP CONSTRAINT govsync_change_log_event_id;
ALTER TABLE govsync_change_log ADD CONSTRAINT govsync_change_log_event UNIQUE (event_id, governed_at);
CREATE INDEX govsync_change_log_logged ON govsync_change_log (logged_at);
