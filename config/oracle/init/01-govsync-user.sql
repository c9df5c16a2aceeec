-- Runs once, at the first start of the Oracle Free container of
-- docker-compose.yml (gvenzl/oracle-free runs /container-entrypoint-initdb.d
-- as SYS in the root container). Development passwords: change them for
-- anything but a local stack.
WHENEVER SQLERROR EXIT SQL.SQLCODE
ALTER SESSION SET CONTAINER = FREEPDB1;

-- govsync's user: `govsync migrate` creates govsync's tables (and, with
-- --with-target-table, the demo CUSTOMER_PROFILE) in this schema. In
-- production the business table lives elsewhere: grant govsync SELECT and
-- UPDATE (INSERT for insert events, DELETE for `govsync rollback` of
-- inserts) on it and set database.schema / database.target_table.
CREATE USER govsync IDENTIFIED BY "govsync" DEFAULT TABLESPACE users QUOTA UNLIMITED ON users;
GRANT CREATE SESSION, CREATE TABLE TO govsync;

-- The integration tests' user (tests/it/sink/oracle.rs): the tests drop and
-- recreate govsync's tables in this schema, and install a trigger.
CREATE USER govsync_test IDENTIFIED BY "govsync_test" DEFAULT TABLESPACE users QUOTA UNLIMITED ON users;
GRANT CREATE SESSION, CREATE TABLE, CREATE TRIGGER TO govsync_test;

EXIT
