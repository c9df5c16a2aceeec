//! Every SQL text the Oracle sink can send, collected for the check that
//! parses them with an Oracle-dialect parser (`scripts/check-oracle-sql`,
//! README "Oracle SQL checked without a server"): no Oracle server runs on
//! the build machines, and a typo must not reach a user's database.
//!
//! [`all_statements`] gathers
//! - the statement constants of [`super::sql`] and [`super::review`],
//!   named in code (a renamed one fails to compile here);
//! - the dictionary queries of [`super::catalog`], which are private to it:
//!   read from its source as rustc reads the literals (the reader is
//!   checked against the public constants, whose values it must give);
//! - the [`Sql`] texts of every kind of table the catalog can produce: the
//!   dev table, the CUST_BASE of the tests, and variants that between them
//!   use every adapter (DATE and TIMESTAMP(n) times, a time as text, a bare
//!   NUMBER, a CLOB field, a table without a version column, one with no
//!   field mapped, a BOOLEAN column the sink refuses at start-up);
//!   [`Sql`] is destructured field by field, so a new text is a compile
//!   error here until it is collected;
//! - every statement of the embedded migrations, cut by
//!   [`split_statements`] as `govsync migrate` cuts them (PL/SQL blocks
//!   included), and the statements that track them.
//!
//! A guard ([`tests::every_sql_text_in_the_sources_is_collected`]) scans the
//! sink's source files for SQL-looking string literals, outside their unit
//! tests: a literal that is a whole `const` must be a collected statement,
//! any other (a `format!` or `concat!` piece) must occur in one, each piece
//! between its `{…}` arguments. A new statement that skips the collector
//! fails it, naming the file and line.
//!
//! Only for tests: [`all_statements`] builds tables with the unit tests'
//! fixtures.
#![cfg(test)]

use std::sync::Arc;
use std::time::Duration;

use super::fixtures::{catalog, col, cust_base_catalog, cust_base_mapping, dev_catalog, dev_map};
use super::migrate::split_statements;
use super::review;
use super::sql::{self, DEV_MIGRATIONS, MIGRATIONS, Sql};
use crate::config::TableMapping;
use crate::event::Column;
use crate::sink::migrate::Embedded;
use crate::sink::table::{Catalog, TableMap, resolve};

/// The lock wait the tables' texts are built with (`WAIT 3`).
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// The private constants of `catalog.rs` that are statements.
const CATALOG_QUERIES: &[&str] = &["CURRENT_SCHEMA", "COLUMNS", "UNIQUE"];

/// Constants that are pieces of statements, never sent alone, with why.
const FRAGMENT_CONSTS: &[(&str, &str)] = &[(
    "IDS",
    "sql.rs's id list, a subquery inside the id-list queries (which are collected)",
)];

/// Every statement text the Oracle sink can send, named by where it comes
/// from, each text once (the first name wins).
pub fn all_statements() -> Vec<(String, String)> {
    let mut out = Statements::default();
    for (name, text) in [
        ("sql::WATERMARK_READ", sql::WATERMARK_READ),
        ("sql::WATERMARK_CREATE", sql::WATERMARK_CREATE),
        ("sql::WATERMARK_ADVANCE", sql::WATERMARK_ADVANCE),
        ("sql::OUTBOX_READ", sql::OUTBOX_READ),
        ("sql::OUTBOX_INSERT", sql::OUTBOX_INSERT),
        ("sql::OUTBOX_PRUNE", sql::OUTBOX_PRUNE),
        ("sql::CHANGE_LOG_INSERT", sql::CHANGE_LOG_INSERT),
        ("sql::ROW_STATE_MERGE", sql::ROW_STATE_MERGE),
        ("sql::REVIEW_SUPERSEDE", sql::REVIEW_SUPERSEDE),
        ("sql::REVIEW_ITEM_INSERT", sql::REVIEW_ITEM_INSERT),
        ("sql::OPEN_REVIEWS", sql::OPEN_REVIEWS),
        ("sql::CHANGE_LOG_PRUNE", sql::CHANGE_LOG_PRUNE),
        ("sql::BATCH_LOG_READ", sql::BATCH_LOG_READ),
        ("sql::LEDGER_INSERT", sql::LEDGER_INSERT),
        ("sql::BATCH_STATUS_SET", sql::BATCH_STATUS_SET),
        ("sql::BATCHES_LIST", sql::BATCHES_LIST),
        ("sql::SAVEPOINT", sql::SAVEPOINT),
        ("sql::ROLLBACK_TO_SAVEPOINT", sql::ROLLBACK_TO_SAVEPOINT),
        ("sql::MIGRATIONS_TABLE", sql::MIGRATIONS_TABLE),
        ("sql::MIGRATION_READ", sql::MIGRATION_READ),
        ("sql::MIGRATION_RECORD", sql::MIGRATION_RECORD),
        ("review::REVIEW_ITEMS_LIST", review::REVIEW_ITEMS_LIST),
        ("review::REVIEW_ITEM_ONE", review::REVIEW_ITEM_ONE),
        ("review::DECISION_KNOWN", review::DECISION_KNOWN),
        ("review::DECISION_INSERT", review::DECISION_INSERT),
        ("review::ITEM_CLOSE", review::ITEM_CLOSE),
        ("review::LOG_SOURCE", review::LOG_SOURCE),
        ("review::DECISIONS_READ", review::DECISIONS_READ),
        ("review::REVIEW_PRUNE", review::REVIEW_PRUNE),
        ("review::DECISIONS_PRUNE", review::DECISIONS_PRUNE),
    ] {
        out.push(name, text);
    }
    let catalog_consts = source_consts(include_str!("catalog.rs"));
    for name in CATALOG_QUERIES {
        let text = catalog_consts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("catalog.rs has no const {name}"));
        out.push(&format!("catalog::{name}"), text);
    }
    out.push("sql::seen_events_sql()", &sql::seen_events_sql());
    out.push("sql::row_states_sql()", &sql::row_states_sql());
    out.push(
        "sql::review_items_present_sql()",
        &sql::review_items_present_sql(),
    );
    for wait in [1, 3, 3600] {
        out.push(
            &format!("review::item_lock_sql({wait})"),
            &review::item_lock_sql(wait),
        );
    }
    for (table, sql) in tables() {
        sql_texts(&mut out, &table, sql);
    }
    for (set, ms) in [
        ("MIGRATIONS", MIGRATIONS),
        ("DEV_MIGRATIONS", DEV_MIGRATIONS),
    ] {
        migrations(&mut out, set, ms);
    }
    out.0
}

/// Statements in order, each text once.
#[derive(Default)]
struct Statements(Vec<(String, String)>);

impl Statements {
    fn push(&mut self, name: &str, text: &str) {
        if !self.0.iter().any(|(_, t)| t == text) {
            self.0.push((name.to_string(), text.to_string()));
        }
    }
}

/// Every text of one table's [`Sql`]: no `..`, so a field added to
/// [`Sql`] fails to compile here until it is collected (or said not to be
/// SQL).
fn sql_texts(out: &mut Statements, table: &str, sql: Sql) {
    let Sql {
        map: _,
        reads: _,
        written: _,
        watermark_lock,
        lock_rows,
        read_rows,
        update_rows,
        insert_rows,
        delete_rows,
        seen_events,
        row_states,
        review_items_present,
        batch_status_lock,
        item_lock,
    } = sql;
    for (field, text) in [
        ("watermark_lock", watermark_lock),
        ("lock_rows", lock_rows),
        ("read_rows", read_rows),
        ("update_rows", update_rows),
        ("insert_rows", insert_rows),
        ("delete_rows", delete_rows),
        ("seen_events", seen_events),
        ("row_states", row_states),
        ("review_items_present", review_items_present),
        ("batch_status_lock", batch_status_lock),
        ("item_lock", item_lock),
    ] {
        out.push(&format!("Sql[{table}].{field}"), &text);
    }
}

fn migrations(out: &mut Statements, set: &str, ms: &[Embedded]) {
    for &(version, description, text) in ms {
        for (i, stmt) in split_statements(text).iter().enumerate() {
            out.push(
                &format!("{set}[{version} {description}] statement {}", i + 1),
                stmt,
            );
        }
    }
}

/// The tables the texts are built for, as [`super::OracleDatabase`] builds
/// them: the mapping resolved against the catalog, then [`Sql::new`].
fn tables() -> Vec<(String, Sql)> {
    let build = |mapping: &TableMapping, table_sql: &str, cat: &Catalog| -> TableMap {
        resolve(mapping, "t", table_sql.into(), Some(cat))
            .unwrap_or_else(|e| panic!("{table_sql}: {e}"))
    };
    let cust_base = "\"CRM\".\"CUST_BASE\"";
    let wide_catalog = {
        let mut cat = cust_base_catalog();
        cat.columns.extend(
            catalog(
                &[
                    col("CHK_TS3", "TIMESTAMP(3)", 0, None, Some(3)),
                    col("CHK_TZ", "TIMESTAMP(3) WITH TIME ZONE", 0, None, Some(3)),
                    col("CHK_NOTE", "CLOB", 0, None, None),
                    col("CARRIER", "CLOB", 0, None, None),
                    col("LAT", "NUMBER", 0, None, None),
                    col("LON", "BINARY_DOUBLE", 0, None, None),
                    col("REV_NO", "NUMBER", 0, Some(1), Some(0)),
                    col("REV_B", "BOOLEAN", 0, None, None),
                    col("ROW_VER", "NUMBER", 0, Some(19), Some(0)),
                    col("CUST_NAME", "VARCHAR2", 100, None, None),
                ],
                &[],
            )
            .columns,
        );
        cat
    };
    let with = |changes: &[(Column, &str)]| {
        let mut m = cust_base_mapping();
        for (c, name) in changes {
            m.columns.insert(*c, (*name).into());
        }
        m
    };
    let mut out = vec![
        (
            "dev table".to_string(),
            Sql::new(Arc::new(dev_map()), LOCK_WAIT),
        ),
        (
            "CUST_BASE".to_string(),
            Sql::new(
                Arc::new(build(&cust_base_mapping(), cust_base, &cust_base_catalog())),
                LOCK_WAIT,
            ),
        ),
    ];
    // Times into a DATE, a CLOB field bound last, a bare NUMBER.
    let dates = with(&[
        (Column::LastGovernanceTime, "chk_ts"),
        (Column::CarrierInfo, "carrier"),
        (Column::GeoLat, "lat"),
        (Column::GeoLon, "lon"),
    ]);
    // Times into a TIMESTAMP(3) in -05:00; the table's own version and
    // name; a flag as NUMBER(1).
    let mut stamps = with(&[
        (Column::LastGovernanceTime, "chk_ts3"),
        (Column::ReviewFlag, "rev_no"),
    ]);
    stamps.zone = chrono::FixedOffset::west_opt(5 * 3600).expect("-05:00");
    stamps.version = Some("row_ver".into());
    stamps.name = Some("cust_name".into());
    stamps.last_update = Some("chk_tz".into());
    // A time as text in a CLOB.
    let text_time = with(&[(Column::LastGovernanceTime, "chk_note")]);
    // BOOLEAN (23ai): refused at start-up by `sql::unsupported`, so never
    // sent; checked all the same, for the day it is accepted.
    let boolean = with(&[(Column::ReviewFlag, "rev_b")]);
    // Nothing mapped but the key: `SET key = key`.
    let mut bare = cust_base_mapping();
    bare.columns.clear();
    bare.last_update = None;
    for (name, mapping) in [
        ("CUST_BASE, times in a DATE", dates),
        ("CUST_BASE, times in a TIMESTAMP(3)", stamps),
        ("CUST_BASE, a time as text", text_time),
        ("CUST_BASE, a BOOLEAN flag (refused at start-up)", boolean),
        ("CUST_BASE, only the key", bare),
    ] {
        let map = build(&mapping, cust_base, &wide_catalog);
        out.push((name.to_string(), Sql::new(Arc::new(map), LOCK_WAIT)));
    }
    // The dev table with its names quoted as the dictionary spells them
    // but a schema-less table name (database.schema unset).
    let dev = build(
        &TableMapping::default(),
        "\"CUSTOMER_PROFILE\"",
        &dev_catalog(),
    );
    out.push((
        "dev table, no schema".to_string(),
        Sql::new(Arc::new(dev), LOCK_WAIT),
    ));
    out
}

/// The `const NAME: &str = "…";` items of a Rust source outside its unit
/// tests, with their values.
fn source_consts(src: &str) -> Vec<(String, String)> {
    literals(src)
        .into_iter()
        .filter_map(|l| l.const_name.map(|n| (n, l.text)))
        .collect()
}

/// A string literal of a Rust source.
#[derive(Debug, Clone, PartialEq)]
struct Literal {
    line: usize,
    /// Its value, escapes resolved as rustc resolves them.
    text: String,
    /// `Some(NAME)` when it is the whole value of `const NAME: &str`.
    const_name: Option<String>,
}

/// The source without its `#[cfg(test)] mod tests { … }` (always the
/// file's last item).
fn without_tests(src: &str) -> &str {
    let mut at = 0;
    while let Some(i) = src[at..].find("#[cfg(test)]") {
        let start = at + i;
        let rest = src[start + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests") {
            return &src[..start];
        }
        at = start + 1;
    }
    src
}

/// The string literals of a Rust source (outside its unit tests), plain
/// and raw; comments and char literals are skipped.
fn literals(src: &str) -> Vec<Literal> {
    let src = without_tests(src);
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '/' if b.get(i + 1) == Some(&'/') => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '/' if b.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                    if b[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 2;
            }
            '\'' => {
                // A char literal ('x', '\n', '\'', '\u{..}') or a lifetime.
                if b.get(i + 1) == Some(&'\\') {
                    i += 3;
                    while i < b.len() && b[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if b.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            'r' if (b.get(i + 1) == Some(&'"') || b.get(i + 1) == Some(&'#'))
                && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&'"') {
                    i += 1;
                    continue;
                }
                let start = j + 1;
                let mut k = start;
                let closes =
                    |k: usize| b[k] == '"' && (1..=hashes).all(|h| b.get(k + h) == Some(&'#'));
                while k < b.len() && !closes(k) {
                    k += 1;
                }
                let text: String = b[start..k].iter().collect();
                let end = k + 1 + hashes;
                out.push(literal(&b, i, end, line, text));
                line += b[i..end.min(b.len())]
                    .iter()
                    .filter(|c| **c == '\n')
                    .count();
                i = end;
            }
            '"' => {
                let (text, end) = unescape(&b, i + 1);
                out.push(literal(&b, i, end, line, text));
                line += b[i..end].iter().filter(|c| **c == '\n').count();
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// A plain literal's value from just after its opening quote; returns the
/// value and the index after the closing quote.
fn unescape(b: &[char], mut i: usize) -> (String, usize) {
    let mut s = String::new();
    while i < b.len() {
        match b[i] {
            '"' => return (s, i + 1),
            '\\' => {
                i += 1;
                match b.get(i) {
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('t') => s.push('\t'),
                    Some('0') => s.push('\0'),
                    Some(c @ ('\\' | '"' | '\'')) => s.push(*c),
                    Some('\n') | Some('\r') => {
                        // A line continuation: the newline and the next
                        // line's leading whitespace are dropped.
                        while i + 1 < b.len() && b[i + 1].is_whitespace() {
                            i += 1;
                        }
                    }
                    Some('x') => {
                        let hex: String = b[i + 1..i + 3].iter().collect();
                        s.push(u8::from_str_radix(&hex, 16).expect("\\x escape") as char);
                        i += 2;
                    }
                    Some('u') => {
                        let close = (i..b.len()).find(|k| b[*k] == '}').expect("\\u{..}");
                        let hex: String = b[i + 2..close].iter().collect();
                        s.push(
                            char::from_u32(u32::from_str_radix(&hex, 16).expect("\\u escape"))
                                .expect("a char"),
                        );
                        i = close;
                    }
                    other => panic!("unknown escape \\{other:?}"),
                }
                i += 1;
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    panic!("unterminated string literal")
}

/// The literal from `start` to `end` (exclusive), with the const it is the
/// whole value of, if any.
fn literal(b: &[char], start: usize, end: usize, line: usize, text: String) -> Literal {
    let before: String = b[start.saturating_sub(200)..start].iter().collect();
    let before = before.trim_end();
    let after = b[end.min(b.len())..].iter().find(|c| !c.is_whitespace());
    let const_name = before
        .strip_suffix('=')
        .map(str::trim_end)
        .and_then(|s| s.strip_suffix("str"))
        .map(str::trim_end)
        .and_then(|s| s.strip_suffix("&'static").or_else(|| s.strip_suffix('&')))
        .map(str::trim_end)
        .and_then(|s| s.strip_suffix(':'))
        .map(str::trim_end)
        .and_then(|s| {
            let name_start = s
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            let (head, name) = s.split_at(name_start);
            head.trim_end().ends_with("const").then(|| name.to_string())
        })
        .filter(|_| after == Some(&';'));
    Literal {
        line,
        text,
        const_name,
    }
}

/// Words that make a literal SQL (upper case, as the sink writes SQL).
const SQL_WORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "SET",
    "VALUES",
    "CASE",
    "WHEN",
    "CAST",
    "JOIN",
    "ORDER",
    "GROUP",
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "BEGIN",
    "DECLARE",
    "SAVEPOINT",
    "ROLLBACK",
    "SYS_EXTRACT_UTC",
    "TO_BINARY_DOUBLE",
    "FROM_TZ",
    "NVL",
    "COALESCE",
];

/// Phrases that do the same where one word alone would also be prose
/// ("after its MERGE").
const SQL_PHRASES: &[&str] = &[
    "MERGE INTO",
    "INSERT INTO",
    "DELETE FROM",
    "FOR UPDATE",
    "LOCK TABLE",
    "CALL ",
    "COMMIT WORK",
    "GRANT ",
];

/// Whether a literal looks like SQL or a piece of it: at least two words,
/// with an upper-case SQL keyword or phrase.
fn looks_like_sql(text: &str) -> bool {
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let spaced = words.join(" ") + " ";
    words.len() >= 2
        && (words.iter().any(|w| SQL_WORDS.contains(w))
            || SQL_PHRASES.iter().any(|p| spaced.contains(p)))
}

/// The pieces of a format string between its `{…}` arguments (the whole
/// text when it has none), blank ones left out.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                cur.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                cur.push('}');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Where the checker's input goes: `$GOVSYNC_ORACLE_SQL_OUT`, else
/// `target/oracle-sql/statements.jsonl`.
fn out_path() -> std::path::PathBuf {
    match std::env::var_os("GOVSYNC_ORACLE_SQL_OUT") {
        Some(p) => p.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/oracle-sql/statements.jsonl"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The input of scripts/oracle-sql/OracleSqlCheck.java: one JSON object
    /// a line, `{"name": …, "sql": …}`.
    #[test]
    fn write_oracle_statements_for_the_checker() {
        let all = all_statements();
        let path = out_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let mut text = String::new();
        for (name, sql) in &all {
            text.push_str(&serde_json::json!({ "name": name, "sql": sql }).to_string());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        eprintln!(
            "{} Oracle statements written to {}",
            all.len(),
            path.display()
        );
    }

    /// A statement that skips the collector fails here, by file and line.
    #[test]
    fn every_sql_text_in_the_sources_is_collected() {
        let all = all_statements();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sink/oracle");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        let mut missing = Vec::new();
        let mut seen = 0;
        for path in &files {
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            // Test-only files: they send nothing.
            if file == "statements.rs" || file == "fixtures.rs" {
                continue;
            }
            let src = std::fs::read_to_string(path).unwrap();
            for l in literals(&src) {
                if !looks_like_sql(&l.text) {
                    continue;
                }
                seen += 1;
                let fragment = l
                    .const_name
                    .as_deref()
                    .is_some_and(|n| FRAGMENT_CONSTS.iter().any(|(f, _)| *f == n));
                let found = match &l.const_name {
                    Some(_) if !fragment => all.iter().any(|(_, s)| *s == l.text),
                    _ => pieces(&l.text)
                        .iter()
                        .all(|p| all.iter().any(|(_, s)| s.contains(p.as_str()))),
                };
                if !found {
                    missing.push(format!(
                        "src/sink/oracle/{file}:{} {}: {:?}",
                        l.line,
                        l.const_name.as_deref().unwrap_or("(a piece)"),
                        l.text
                    ));
                }
            }
        }
        assert!(
            seen >= 40,
            "only {seen} SQL literals found: is the scanner broken?"
        );
        assert!(
            missing.is_empty(),
            "SQL in the Oracle sink's sources that statements::all_statements() does not \
             collect (add it there, so scripts/check-oracle-sql parses it):\n{}",
            missing.join("\n")
        );
    }

    /// The source reader gives what rustc gives: every public statement
    /// constant read from its file equals its value.
    #[test]
    fn the_source_reader_reads_literals_as_rustc_does() {
        let sql_rs = source_consts(include_str!("sql.rs"));
        let review_rs = source_consts(include_str!("review.rs"));
        let value = |consts: &[(String, String)], name: &str| {
            consts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| panic!("no const {name}"))
        };
        let mut compared = 0;
        for (name, text) in all_statements() {
            let Some((file, c)) = name.split_once("::") else {
                continue;
            };
            let consts = match file {
                "sql" if !c.ends_with(')') => &sql_rs,
                "review" if !c.ends_with(')') && !c.starts_with("REVIEW_ITEM") => &review_rs,
                _ => continue,
            };
            assert_eq!(value(consts, c), text, "{name}");
            compared += 1;
        }
        assert!(compared >= 25, "{compared}");
        // Escapes, raw strings, chars and comments.
        let src = "const A: &str = \"a \\\"b\\\" \\\n      c\\u{4e2d}\"; // \"not\"\n\
                   const B: &'static str = r#\"x \"y\"\"#;\nlet q = '\"'; let l: &'a str = \"z\";\n\
                   /* \"no\" */ fn f() { g(\"SELECT {x} FROM t\") }\n\
                   #[cfg(test)]\nmod tests { const C: &str = \"t\"; }";
        let ls = literals(src);
        let got: Vec<(Option<&str>, &str, usize)> = ls
            .iter()
            .map(|l| (l.const_name.as_deref(), l.text.as_str(), l.line))
            .collect();
        assert_eq!(
            got,
            [
                (Some("A"), "a \"b\" c中", 1),
                (Some("B"), "x \"y\"", 3),
                (None, "z", 4),
                (None, "SELECT {x} FROM t", 5),
            ]
        );
        assert_eq!(
            pieces("SELECT {x} FROM {{t}} {}"),
            ["SELECT ", " FROM {t} "]
        );
    }

    /// The collection reaches every kind of text: all tables, each
    /// migration statement, the texts of the adapters.
    #[test]
    fn the_collection_covers_tables_adapters_and_migrations() {
        let all = all_statements();
        let has = |needle: &str| all.iter().any(|(_, s)| s.contains(needle));
        for needle in [
            "MERGE INTO govsync_watermark",
            "FOR UPDATE OF c.\"CUST_NO\" WAIT 3",
            "TO_BINARY_DOUBLE(c.\"DATA_QLTY\")",
            "CAST((:p_last_governance_time AT TIME ZONE '+08:00') AS DATE)",
            "CAST((:p_last_governance_time AT TIME ZONE '-05:00') AS TIMESTAMP(3))",
            "CASE :p_review_flag WHEN 1 THEN TRUE WHEN 0 THEN FALSE END",
            "\"CUST_NO\" = \"CUST_NO\"",
            "FROM \"CUSTOMER_PROFILE\" c",
            "CREATE TABLE govsync_review_decision (",
            "ALTER TABLE govsync_change_log ADD (source VARCHAR2(220 CHAR))",
            "CREATE TABLE customer_profile (",
            "FROM all_tab_columns",
        ] {
            assert!(has(needle), "{needle}");
        }
        let migration_statements: usize = MIGRATIONS
            .iter()
            .chain(DEV_MIGRATIONS)
            .map(|m| split_statements(m.2).len())
            .sum();
        let collected = all
            .iter()
            .filter(|(n, _)| n.contains("MIGRATIONS["))
            .count();
        assert_eq!(collected, migration_statements);
        let names: std::collections::HashSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), all.len(), "names are unique");
        assert!(
            all.iter()
                .all(|(_, s)| !s.trim_end().ends_with(';') || s.contains("END"))
        );
    }

    /// Every migration file of migrations/oracle is embedded (so collected),
    /// except grants.sql: the DBA's least-privilege script, run by hand in
    /// SQL*Plus, never by govsync.
    #[test]
    fn every_oracle_migration_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/oracle");
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.file_name().is_some_and(|n| n == "grants.sql") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                MIGRATIONS.iter().chain(DEV_MIGRATIONS).any(|m| m.2 == text),
                "{} is not in sql::MIGRATIONS or sql::DEV_MIGRATIONS",
                path.display()
            );
        }
    }

    #[test]
    fn sql_markers_tell_statements_from_messages() {
        assert!(looks_like_sql("SAVEPOINT govsync_write"));
        assert!(looks_like_sql(" ORDER BY c."));
        assert!(!looks_like_sql("BEGIN"));
        assert!(!looks_like_sql(
            "the govsync_watermark row vanished after its MERGE"
        ));
    }
}
