-- Least privilege for govsync's login user on Oracle (README "Security").
--
-- NOT a migration: `govsync migrate` never runs this file. The owner of
-- govsync's tables (the schema `govsync migrate` ran in, database.schema)
-- runs it in SQL*Plus or SQLcl after every `govsync migrate`, with the
-- substitution variables defined first (or answered when prompted):
--
--   DEFINE app_user       = GOVSYNC_APP
--   DEFINE target_table   = CRM.CUST_BASE
--   DEFINE update_columns = "ADDRESS, GEO_LAT, GEO_LON, GEO_ACCURACY, ID_CARD, PHONE, CARRIER_INFO, QUALITY_SCORE, VALIDATION_STATUS, REVIEW_FLAG, REVIEW_PRIORITY, LAST_GOVERNANCE_TIME, VERSION"
--   @migrations/oracle/grants.sql
--
-- The user itself is the DBA's, with nothing but a session:
--   CREATE USER govsync_app IDENTIFIED BY "..."; -- from the secret store
--   GRANT CREATE SESSION TO govsync_app;
-- govsync connects as it with database.schema = the owner's schema (it sets
-- CURRENT_SCHEMA, which grants no privilege by itself). TLS: a TCPS listener
-- and a wallet holding the CA; the URL's service then names the TCPS
-- descriptor (README "Security").
--
-- Oracle grants SELECT per table only (no column list): the business
-- table's SELECT is what `SELECT ... FOR UPDATE` needs (READ would not allow
-- locking). UPDATE is granted on the allow-listed columns only: the fields
-- the rules allow govsync to write (rules.allow), the governance fields it
-- sets and the version column. Where even reading the other columns must be
-- denied, the business side exposes a view with the mapped columns only and
-- database.target_table names the view (updatable, single table, with the
-- key column's unique index underneath).

WHENEVER SQLERROR EXIT SQL.SQLCODE

-- The business table: read, lock, update the allow-listed columns. No
-- INSERT, no DELETE: events with operation "insert" need, in addition,
--   GRANT INSERT (<key>, <name>, <update columns>) ON <target_table> TO <app_user>;
GRANT SELECT ON &&target_table TO &&app_user;
GRANT UPDATE (&&update_columns) ON &&target_table TO &&app_user;

-- govsync's own tables: all it needs (retention is a plain DELETE here).
GRANT SELECT, INSERT, UPDATE, DELETE ON govsync_change_log TO &&app_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON govsync_batch TO &&app_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON govsync_watermark TO &&app_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON govsync_outbox TO &&app_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON govsync_row_state TO &&app_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON govsync_review_item TO &&app_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON govsync_review_decision TO &&app_user;
-- Which migrations ran: read only (`govsync migrate` runs as the owner).
GRANT SELECT ON govsync_migrations TO &&app_user;
