//! The migration runner: sqlx has no Oracle driver, so the embedded DDL of
//! `migrations/oracle/` ([`super::sql::MIGRATIONS`]) is split into
//! statements and applied here one by one, each migration tracked in
//! `GOVSYNC_MIGRATIONS` (version + checksum).

use oracle::Connection;

use super::binds::{Binds, int, s};
use super::exec::{exec, params, query};
use super::sql::{MIGRATION_READ, MIGRATION_RECORD, MIGRATIONS_TABLE};
use crate::sink::migrate::Embedded;
use crate::sink::{SinkError, SinkResult};

/// Whether an ORA number says a DDL statement's object exists already (name
/// used, index on those columns, primary key, unique key, column): a re-run
/// after a partial migration skips such statements.
pub fn already_exists(ora: i32) -> bool {
    matches!(ora, 955 | 1408 | 2260 | 2261 | 1430)
}

/// Runs one DDL statement; an object that exists already is not an error.
fn exec_ddl(conn: &Connection, sql: &str) -> SinkResult<()> {
    match conn.execute(sql, &[]) {
        Ok(_) => Ok(()),
        Err(e) if e.db_error().is_some_and(|d| already_exists(d.code())) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 64-bit FNV-1a of the migration text, hex: detects a migration file that
/// changed after it was applied.
pub fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Splits a migration file into statements for one call each: a statement
/// ends with `;` (outside quotes and comments); a PL/SQL block (BEGIN,
/// DECLARE, CREATE [OR REPLACE] PROCEDURE/FUNCTION/PACKAGE/TRIGGER/TYPE)
/// ends with a line holding only `/` and keeps its semicolons. Comments are
/// dropped; empty statements are skipped.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut at_line_start = true;
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        cur.push('\n');
                        break;
                    }
                }
                at_line_start = true;
                continue;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                cur.push(' ');
                continue;
            }
            '\'' | '"' => {
                cur.push(c);
                for q in chars.by_ref() {
                    cur.push(q);
                    // A doubled quote ('') reopens the literal at once.
                    if q == c {
                        break;
                    }
                }
            }
            ';' if !is_plsql(&cur) => {
                push_statement(&mut out, &cur);
                cur.clear();
            }
            '/' if at_line_start
                && cur.trim_end().ends_with(';')
                && is_plsql(&cur)
                && chars.peek().is_none_or(|n| *n == '\n' || *n == '\r') =>
            {
                push_statement(&mut out, &cur);
                cur.clear();
            }
            _ => cur.push(c),
        }
        at_line_start = c == '\n' || (at_line_start && (c == ' ' || c == '\t'));
    }
    push_statement(&mut out, &cur);
    out
}

fn push_statement(out: &mut Vec<String>, s: &str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
}

fn is_plsql(stmt: &str) -> bool {
    let words: Vec<String> = stmt
        .split_whitespace()
        .take(5)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["BEGIN", ..] | ["DECLARE", ..] => true,
        ["CREATE", "OR", "REPLACE", kind, ..] | ["CREATE", kind, ..] => matches!(
            *kind,
            "PROCEDURE" | "FUNCTION" | "PACKAGE" | "TRIGGER" | "TYPE"
        ),
        _ => false,
    }
}

/// Applies the migrations of one set that are not recorded yet, statement
/// by statement, and records each (DDL commits by itself in Oracle; the
/// record is committed right after).
pub(super) fn apply_migrations(conn: &Connection, set: &str, ms: &[Embedded]) -> SinkResult<()> {
    exec_ddl(conn, MIGRATIONS_TABLE)
        .map_err(|e| migration_error("creating govsync_migrations", e))?;
    for &(version, description, text) in ms {
        let sum = checksum(text);
        let key: Binds = vec![("p_set", s(set)), ("p_version", int(version))];
        let applied: Option<String> = query(conn, MIGRATION_READ, &params(&key), |r| r.get(0))?
            .into_iter()
            .next();
        if let Some(applied) = applied {
            if applied != sum {
                return Err(SinkError::Fatal(format!(
                    "Oracle migration {set} {version} ({description}) changed after it was applied \
                     (checksum {applied} in govsync_migrations, {sum} in this build)"
                )));
            }
            continue;
        }
        for (i, stmt) in split_statements(text).iter().enumerate() {
            exec_ddl(conn, stmt).map_err(|e| {
                migration_error(
                    &format!(
                        "migration {set} {version} ({description}), statement {}",
                        i + 1
                    ),
                    e,
                )
            })?;
        }
        let record: Binds = vec![
            ("p_set", s(set)),
            ("p_version", int(version)),
            ("p_description", s(description)),
            ("p_checksum", s(&sum)),
        ];
        match exec(conn, MIGRATION_RECORD, &record) {
            Ok(_) => {}
            // Another instance migrated at the same time.
            Err(SinkError::Record { code, .. }) if code.as_deref() == Some("ORA-00001") => {}
            Err(e) => return Err(e),
        }
        conn.commit()?;
    }
    Ok(())
}

fn migration_error(what: &str, e: SinkError) -> SinkError {
    SinkError::Fatal(format!("Oracle migration failed at {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::super::sql::{DEV_MIGRATIONS, MIGRATIONS};
    use super::*;

    #[test]
    fn migration_files_split_into_statements() {
        let stmts = split_statements(MIGRATIONS[0].2);
        assert_eq!(stmts.len(), 8, "{stmts:#?}");
        assert!(stmts[0].starts_with("CREATE TABLE govsync_change_log ("));
        assert!(stmts.iter().all(|s| !s.ends_with(';') && !s.contains("--")));
        let creates = |what: &str| stmts.iter().filter(|s| s.starts_with(what)).count();
        assert_eq!(creates("CREATE TABLE"), 4);
        assert_eq!(creates("CREATE INDEX"), 4);
        // 0003: one statement; a re-run finds the column (ORA-01430).
        assert_eq!(
            split_statements(MIGRATIONS[2].2),
            ["ALTER TABLE govsync_row_state ADD (version NUMBER(19))"]
        );
        assert!(already_exists(1430));
        // 0004: the review items' table (COMMENT quoted: a reserved word)
        // and its index; a re-run finds them (ORA-00955, ORA-01408).
        let review = split_statements(MIGRATIONS[3].2);
        assert_eq!(review.len(), 2, "{review:#?}");
        assert!(review[0].starts_with("CREATE TABLE govsync_review_item ("));
        assert!(review[0].contains("\"COMMENT\"     CLOB,"));
        assert!(review[0].contains(
            "CHECK (status IN ('open', 'approved', 'rejected', 'corrected', 'superseded'))"
        ));
        assert!(review[0].ends_with(')'));
        assert_eq!(
            review[1],
            "CREATE INDEX govsync_review_item_open ON govsync_review_item (customer_id, data_type, status)"
        );
        assert!(review.iter().all(|s| !s.contains("--") && !s.contains(';')));
        // 0005: the decisions' table and index, two added columns; a re-run
        // finds them (ORA-00955, ORA-01408, ORA-01430).
        let decisions = split_statements(MIGRATIONS[4].2);
        assert_eq!(decisions.len(), 4, "{decisions:#?}");
        assert!(decisions[0].starts_with("CREATE TABLE govsync_review_decision ("));
        assert!(decisions[0].contains("\"COMMENT\"        CLOB,"));
        assert_eq!(
            &decisions[2..],
            [
                "ALTER TABLE govsync_review_item ADD (decision_id VARCHAR2(100 CHAR))",
                "ALTER TABLE govsync_change_log ADD (source VARCHAR2(220 CHAR))"
            ]
        );
        let dev = split_statements(DEV_MIGRATIONS[0].2);
        assert_eq!(dev.len(), 1);
        assert!(dev[0].contains("geo_lat              BINARY_DOUBLE"));
        assert!(dev[0].ends_with(')'));
    }

    #[test]
    fn splitter_keeps_quotes_and_plsql_blocks() {
        let text = "-- a comment; with a semicolon\n\
                    INSERT INTO t VALUES ('a;b', 'it''s');\n\
                    /* block; comment */ CREATE INDEX i ON t (x);\n\
                    BEGIN\n  EXECUTE IMMEDIATE 'x';\n  NULL;\nEND;\n/\n\
                    CREATE OR REPLACE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW\nBEGIN\n  NULL;\nEND;\n/\n\
                    SELECT 1 FROM dual";
        let s = split_statements(text);
        assert_eq!(s.len(), 5, "{s:#?}");
        assert_eq!(s[0], "INSERT INTO t VALUES ('a;b', 'it''s')");
        assert_eq!(s[1], "CREATE INDEX i ON t (x)");
        assert_eq!(s[2], "BEGIN\n  EXECUTE IMMEDIATE 'x';\n  NULL;\nEND;");
        assert!(s[3].starts_with("CREATE OR REPLACE TRIGGER") && s[3].ends_with("END;"));
        assert_eq!(s[4], "SELECT 1 FROM dual");
        // A division is not a block terminator.
        assert_eq!(
            split_statements("SELECT 4\n/ 2 FROM dual;"),
            ["SELECT 4\n/ 2 FROM dual"]
        );
    }

    #[test]
    fn migration_checksums() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_ne!(checksum(MIGRATIONS[0].2), checksum(DEV_MIGRATIONS[0].2));
        assert_eq!(checksum(MIGRATIONS[0].2).len(), 16);
        assert!(already_exists(955) && already_exists(1408));
        assert!(!already_exists(942) && !already_exists(1));
    }
}
