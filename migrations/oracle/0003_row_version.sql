-- A business table need not have a version column (issue 14): govsync's
-- write count of each row (the exactly-once witness the review messages and
-- the verification use) is kept here, written with the row state in the
-- batch's transaction. Where the table has its own (database.mapping.version)
-- that column is read; this one is written all the same.
-- A re-run finds the column (ORA-01430) and skips it.
ALTER TABLE govsync_row_state ADD (version NUMBER(19));
