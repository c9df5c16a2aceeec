-- Least privilege for govsync's login role on PostgreSQL (README "Security").
--
-- NOT a migration: `govsync migrate` never runs this file (it is not in the
-- embedded list). The owner of govsync's tables (the role that ran
-- `govsync migrate`, with the right to grant on the business table) runs it
-- after every `govsync migrate`, with psql variables naming the role, the
-- schemas and the columns:
--
--   psql -v ON_ERROR_STOP=1 \
--     -v app_role=govsync_app \
--     -v schema=govsync \
--     -v target_schema=crm -v target_table=crm.cust_base \
--     -v select_columns='cust_no, full_name, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, quality_score, validation_status, review_flag, review_priority, last_governance_time, last_update, version' \
--     -v update_columns='address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, quality_score, validation_status, review_flag, review_priority, last_governance_time, version' \
--     -f migrations/postgres/grants.sql
--
-- The role itself is the DBA's (CREATE ROLE needs CREATEROLE), e.g.
--   CREATE ROLE govsync_app LOGIN NOINHERIT PASSWORD '...';  -- from the secret store
-- and pg_hba.conf lets it in over TLS only:
--   hostssl   <db> govsync_app <govsync hosts>  scram-sha-256
--   hostnossl all  govsync_app all               reject
--
-- select_columns: every column of database.mapping (key, name, version,
-- last_update and each mapped field): govsync reads its catalog entries
-- (information_schema shows a role only the columns it holds a privilege on)
-- and RETURNING reads the written row back. update_columns: the fields the
-- rules allow govsync to write (rules.allow), the governance fields it sets
-- (quality_score, validation_status, review_flag, review_priority,
-- last_governance_time) and the version column. An UPDATE privilege on a
-- column is also what `SELECT ... FOR UPDATE` needs. Columns outside these
-- lists stay invisible and untouchable to govsync.

\set ON_ERROR_STOP on

GRANT CONNECT ON DATABASE :"DBNAME" TO :"app_role";
GRANT USAGE ON SCHEMA :"schema" TO :"app_role";
GRANT USAGE ON SCHEMA :"target_schema" TO :"app_role";

-- The business table: read the mapped columns, update the allow-listed
-- ones, lock rows (FOR UPDATE). No INSERT, no DELETE: events with
-- operation "insert" (a new customer) need, in addition,
--   GRANT INSERT (<key>, <name>, <update_columns>) ON <target_table> TO <app_role>;
-- and `govsync rollback` (an operator's tool) runs as the owner, not as this role.
GRANT SELECT (:select_columns) ON TABLE :target_table TO :"app_role";
GRANT UPDATE (:update_columns) ON TABLE :target_table TO :"app_role";

-- govsync's own tables: all it needs, nothing on anything else. The change
-- log's partitions are reached through their parent (privileges are checked
-- on the parent only).
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE
    :"schema".govsync_change_log,
    :"schema".govsync_batch,
    :"schema".govsync_watermark,
    :"schema".govsync_outbox,
    :"schema".govsync_row_state,
    :"schema".govsync_review_item,
    :"schema".govsync_review_decision
TO :"app_role";
-- Which migrations ran: read only (`govsync migrate` runs as the owner).
GRANT SELECT ON TABLE :"schema".govsync_migrations TO :"app_role";

-- The change log's retention creates and drops daily partitions, which only
-- the owner of govsync_change_log may do: the maintenance function runs with
-- its owner's rights (SECURITY DEFINER) and a fixed search_path, and only
-- this role and the owner may call it. A later migration that replaces the
-- function resets this: run this file again after every `govsync migrate`.
ALTER FUNCTION :"schema".govsync_change_log_maintain(INTERVAL, INTEGER)
    SECURITY DEFINER SET search_path = :"schema", pg_temp;
REVOKE ALL ON FUNCTION :"schema".govsync_change_log_maintain(INTERVAL, INTEGER) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION :"schema".govsync_change_log_maintain(INTERVAL, INTEGER) TO :"app_role";
