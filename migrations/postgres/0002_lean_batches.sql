-- Batches that cost the same however long govsync has run (issue 13).
--
-- 1. Staleness reads one row per customer instead of aggregating the
--    change log's history: govsync_row_state holds, per customer, the
--    governed_at of the last applied (or flagged) result of each data type.
--    It is written in the batch's transaction, with the change log.
-- 2. The change log is partitioned by day of governed_at, so its indexes
--    stay the size of a day, a dedupe probe touches one day's index, and
--    old days are dropped whole. A duplicate is the same event_id with the
--    same governed_at (a re-sent event carries both); the unique index
--    includes the partition key, as PostgreSQL requires. Retention counts
--    from when a row was logged (`change_log.retention`): a day is dropped
--    once every row in it was logged longer ago, rows of results governed
--    outside the daily partitions (the default partition, the version-1
--    table) are deleted by logged_at. govsync_change_log_maintain does it,
--    run by `govsync migrate` and by the processor every hour.
-- 3. Every change-log row pays for one B-tree only, the dedupe index:
--    staleness moved to govsync_row_state (no per-customer index), a
--    batch's rows are found by their logged_at (the batch's transaction
--    time, which the ledger keeps as committed_at) through a BRIN index,
--    which costs next to nothing to keep (rows are appended in logged_at
--    order) and also serves retention.

-- Keys of govsync's own tables compare bytewise (COLLATE "C"): cheaper
-- than the database's linguistic collation, and equality is the same.
CREATE TABLE IF NOT EXISTS govsync_row_state (
    customer_id         VARCHAR(64) COLLATE "C" PRIMARY KEY,
    address_governed_at TIMESTAMPTZ,
    id_card_governed_at TIMESTAMPTZ,
    phone_governed_at   TIMESTAMPTZ
);
INSERT INTO govsync_row_state (customer_id, address_governed_at, id_card_governed_at, phone_governed_at)
SELECT customer_id,
       max(governed_at) FILTER (WHERE data_type = 'address'),
       max(governed_at) FILTER (WHERE data_type = 'id_card'),
       max(governed_at) FILTER (WHERE data_type = 'phone')
FROM govsync_change_log
WHERE outcome IN ('applied', 'flagged')
GROUP BY customer_id
ON CONFLICT (customer_id) DO NOTHING;

-- The version-1 table becomes the partition of everything governed before
-- the first daily partition (or is dropped when it is empty: a new
-- installation). Its constraints of version 1 go: the partitioned table's
-- indexes replace them.
ALTER TABLE govsync_change_log RENAME TO govsync_change_log_v1;
DROP INDEX IF EXISTS govsync_change_log_customer;
ALTER TABLE govsync_change_log_v1 DROP CONSTRAINT IF EXISTS govsync_change_log_event_id;
ALTER TABLE govsync_change_log_v1 DROP CONSTRAINT IF EXISTS govsync_change_log_pkey;
ALTER TABLE govsync_change_log_v1 DROP COLUMN IF EXISTS id;

CREATE TABLE govsync_change_log (
    batch_id         VARCHAR(300) NOT NULL,
    event_id         VARCHAR(300) COLLATE "C" NOT NULL,
    customer_id      VARCHAR(64)  NOT NULL,
    data_type        VARCHAR(16)  NOT NULL,
    operation        VARCHAR(20)  NOT NULL,
    outcome          VARCHAR(16)  NOT NULL,
    governed_at      TIMESTAMPTZ  NOT NULL,
    before_image     TEXT,
    after_image      TEXT,
    source_partition INTEGER      NOT NULL,
    source_offset    BIGINT       NOT NULL,
    logged_at        TIMESTAMPTZ  NOT NULL DEFAULT now()
) PARTITION BY RANGE (governed_at);
CREATE UNIQUE INDEX govsync_change_log_event ON govsync_change_log (event_id, governed_at);
CREATE INDEX govsync_change_log_logged ON govsync_change_log USING brin (logged_at);
-- Results governed before the oldest or after the newest daily partition
-- (a late replay, a producer's clock far ahead).
CREATE TABLE govsync_change_log_default PARTITION OF govsync_change_log DEFAULT;

DO $$
DECLARE
    cutoff TIMESTAMPTZ;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM govsync_change_log_v1) THEN
        DROP TABLE govsync_change_log_v1;
        RETURN;
    END IF;
    ALTER TABLE govsync_change_log_v1 ALTER COLUMN event_id TYPE VARCHAR(300) COLLATE "C";
    SELECT greatest(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                    date_trunc('day', max(governed_at) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day')
      INTO cutoff FROM govsync_change_log_v1;
    EXECUTE format('ALTER TABLE govsync_change_log ATTACH PARTITION govsync_change_log_v1 FOR VALUES FROM (MINVALUE) TO (%L)', cutoff);
END $$;

-- Creates the daily partitions from today to `ahead_days` ahead (UTC days,
-- named govsync_change_log_YYYYMMDD), drops the daily partitions whose
-- rows were all logged before now() - retention, and deletes the rows the
-- default and version-1 partitions logged before then. Returns what it did.
-- Runs under an advisory lock: one instance at a time.
CREATE OR REPLACE FUNCTION govsync_change_log_maintain(retention INTERVAL, ahead_days INTEGER)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    day     DATE;
    name    TEXT;
    created INTEGER := 0;
    dropped INTEGER := 0;
    deleted BIGINT := 0;
    n       BIGINT;
    horizon TIMESTAMPTZ := now() - retention;
    recent  BOOLEAN;
    part    RECORD;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('govsync_change_log_maintain'));
    FOR i IN 0..ahead_days LOOP
        day := (now() AT TIME ZONE 'UTC')::date + i;
        name := 'govsync_change_log_' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(name) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE %I PARTITION OF govsync_change_log FOR VALUES FROM (%L) TO (%L)',
                           name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        EXCEPTION WHEN invalid_object_definition OR check_violation THEN
            -- The range overlaps the version-1 partition, or the default
            -- partition holds rows of that day: they stay where they are.
            NULL;
        END;
    END LOOP;
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'govsync_change_log'::regclass
          AND c.relname ~ '^govsync_change_log_[0-9]{8}$'
          AND to_date(substr(c.relname, 20), 'YYYYMMDD') + 1 <= (horizon AT TIME ZONE 'UTC')::date
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE logged_at >= %L)', part.relname, horizon)
          INTO recent;
        IF NOT recent THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    DELETE FROM govsync_change_log_default WHERE logged_at < horizon;
    GET DIAGNOSTICS n = ROW_COUNT;
    deleted := deleted + n;
    IF to_regclass('govsync_change_log_v1') IS NOT NULL THEN
        DELETE FROM govsync_change_log_v1 WHERE logged_at < horizon;
        GET DIAGNOSTICS n = ROW_COUNT;
        deleted := deleted + n;
    END IF;
    RETURN format('%s partitions created, %s dropped, %s rows deleted', created, dropped, deleted);
END $$;

-- Only creates partitions here: what is old is deleted by the processor,
-- with the retention of its config.
SELECT govsync_change_log_maintain(interval '100 years', 7);
