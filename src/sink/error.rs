//! Database errors, classified in code (SQLSTATE, SQLite result codes, ORA
//! and DPI numbers), never by matching message text. The class decides: retry the
//! batch, split it to find the record, or stall.

use std::fmt;

/// Infrastructure faults: the batch is retried as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transient {
    /// Connection lost or refused, database restarting.
    Connection,
    /// Statement or pool timeout.
    Timeout,
    Deadlock,
    Serialization,
    /// A row lock could not be taken in time.
    LockWait,
}

impl Transient {
    pub fn as_str(self) -> &'static str {
        match self {
            Transient::Connection => "connection",
            Transient::Timeout => "timeout",
            Transient::Deadlock => "deadlock",
            Transient::Serialization => "serialization",
            Transient::LockWait => "lock_wait",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    /// Retry the whole batch with backoff.
    #[error("{} error: {message}", class.as_str())]
    Transient { class: Transient, message: String },
    /// The database rejected a row (value too long, constraint): split the
    /// batch to find it.
    #[error("record rejected by the database ({}): {message}", code.as_deref().unwrap_or("no code"))]
    Record {
        code: Option<String>,
        constraint: Option<String>,
        message: String,
    },
    /// The re-read after writing did not match what was written.
    #[error("post-write verification failed: {0}")]
    Verification(String),
    /// Anything else (missing table, permissions, a bug): the partition stalls
    /// and is retried with capped backoff until an operator fixes it.
    #[error("{0}")]
    Fatal(String),
}

impl SinkError {
    /// The label for metrics and logs.
    pub fn class(&self) -> &'static str {
        match self {
            SinkError::Transient { class, .. } => class.as_str(),
            SinkError::Record { .. } => "record",
            SinkError::Verification(_) => "verification",
            SinkError::Fatal(_) => "fatal",
        }
    }

    pub fn transient(class: Transient, message: impl fmt::Display) -> Self {
        SinkError::Transient {
            class,
            message: message.to_string(),
        }
    }
}

/// Classifies a PostgreSQL SQLSTATE.
pub fn classify_sqlstate(code: &str, constraint: Option<&str>, message: &str) -> SinkError {
    let class = &code[..code.len().min(2)];
    let transient = |c| SinkError::transient(c, format!("{message} (SQLSTATE {code})"));
    match (code, class) {
        ("40001", _) => transient(Transient::Serialization),
        ("40P01", _) => transient(Transient::Deadlock),
        ("55P03", _) => transient(Transient::LockWait),
        ("57014", _) => transient(Transient::Timeout),
        ("57P01" | "57P02" | "57P03", _) | (_, "08") | (_, "53") => {
            transient(Transient::Connection)
        }
        (_, "22") | (_, "23") => SinkError::Record {
            code: Some(code.to_string()),
            constraint: constraint.map(str::to_string),
            message: message.to_string(),
        },
        ("42P01", _) => SinkError::Fatal(format!(
            "{message} (SQLSTATE {code}): run `govsync migrate`"
        )),
        // PostgreSQL names the table, not the column or the privilege.
        ("42501", _) => SinkError::Fatal(format!(
            "{message} (SQLSTATE {code}): govsync's database role lacks a privilege; it needs              SELECT of every column of database.mapping, UPDATE of every column it writes and              all privileges on its govsync_* tables (migrations/postgres/grants.sql)"
        )),
        _ => SinkError::Fatal(format!("{message} (SQLSTATE {code})")),
    }
}

/// Classifies a SQLite (extended) result code.
pub fn classify_sqlite(code: i32, message: &str) -> SinkError {
    let primary = code & 0xff;
    match primary {
        5 | 6 => SinkError::transient(Transient::LockWait, message),
        19 | 20 | 25 => SinkError::Record {
            code: Some(format!("SQLITE_{code}")),
            constraint: None,
            message: message.to_string(),
        },
        10 | 14 => SinkError::transient(Transient::Connection, message),
        _ => SinkError::Fatal(format!("{message} (SQLite code {code})")),
    }
}

/// Classifies an Oracle error number (the NNNNN of ORA-NNNNN).
pub fn classify_ora(code: i32, message: &str) -> SinkError {
    let transient = |c| SinkError::transient(c, format!("{message} (ORA-{code:05})"));
    match code {
        // End of file on the connection, lost contact, connect timeout, no
        // listener, unknown service, listener refused or busy, instance
        // starting up / down / shutting down, session killed or idle-killed,
        // "not connected", protocol adapter and packet errors.
        1012 | 1033 | 1034 | 1089 | 1092 | 2396 | 3113 | 3114 | 3135 | 12152 | 12153 | 12170
        | 12514 | 12516 | 12519 | 12520 | 12528 | 12537 | 12541 | 12547 | 12560 | 12571 | 28547 => {
            transient(Transient::Connection)
        }
        // User requested cancel: a call timeout or a cancelled statement.
        1013 => transient(Transient::Timeout),
        60 => transient(Transient::Deadlock),
        // FOR UPDATE WAIT n ran out / NOWAIT found the row locked.
        30006 | 54 => transient(Transient::LockWait),
        8177 => transient(Transient::Serialization),
        // Unique, NOT NULL, too large (also a string too long for an inline
        // bind, ORA-01461), check, foreign key, precision, invalid number and
        // date values: one record's data, not the batch.
        1 | 1400 | 1401 | 1407 | 1438 | 1461 | 1722 | 1840 | 1841 | 2290 | 2291 | 2292 | 12899 => {
            SinkError::Record {
                code: Some(format!("ORA-{code:05}")),
                constraint: ora_object(code, message),
                message: message.to_string(),
            }
        }
        942 => SinkError::Fatal(format!(
            "{message} (ORA-00942): a table is missing; run `govsync migrate` against this database \
             (and check database.schema / database.target_table)"
        )),
        1017 => SinkError::Fatal(format!(
            "{message} (ORA-01017): check the user in database.url and the password \
             (database.password_env / database.password_file)"
        )),
        _ => SinkError::Fatal(format!("{message} (ORA-{code:05})")),
    }
}

/// The object an Oracle record-level error names: the constraint of
/// ORA-00001/02290/02291/02292 (`(SCHEMA.NAME)`), the column of
/// ORA-01400/01407 (`("S"."T"."C")`) and ORA-12899 (`"S"."T"."C"`). The
/// error class never depends on this text; it only fills the dead-letter
/// header.
fn ora_object(code: i32, message: &str) -> Option<String> {
    let inner = match code {
        12899 => {
            let start = message.find('"')?;
            let end = message.rfind('"')?;
            (end > start).then(|| &message[start..=end])?
        }
        _ => {
            let start = message.find('(')? + 1;
            let end = start + message[start..].find(')')?;
            &message[start..end]
        }
    };
    let name = inner.replace('"', "");
    (!name.is_empty()).then_some(name)
}

/// Classifies an ODPI-C error number (the NNNN of DPI-NNNN).
pub fn classify_dpi(code: i32, message: &str) -> SinkError {
    match code {
        // Not connected; connection closed by ORA-n (the session died).
        1010 | 1080 => SinkError::transient(Transient::Connection, message),
        // Call timeout exceeded.
        1067 => SinkError::transient(Transient::Timeout, message),
        // The Oracle client library is missing or unusable.
        1047 | 1072 => SinkError::Fatal(oracle_client_missing(message)),
        _ => SinkError::Fatal(format!("{message} (DPI-{code:04})")),
    }
}

/// Where to get the Oracle client library from.
pub const ORACLE_CLIENT_URL: &str =
    "https://www.oracle.com/database/technologies/instant-client/downloads.html";

/// The startup message when the Oracle client library cannot be loaded
/// (DPI-1047): what is missing and how to install it.
pub fn oracle_client_missing(detail: &str) -> String {
    format!(
        "the Oracle sink needs the Oracle Client library (libclntsh.so, 64-bit, release 19 or later), \
         and it could not be loaded.\n\
         \x20 To fix: download Oracle Instant Client, package \"basic\" or \"basiclite\", from\n\
         \x20   {ORACLE_CLIENT_URL}\n\
         \x20 unzip it (e.g. to /opt/oracle/instantclient), install libaio (`apt-get install libaio1`,\n\
         \x20 libaio1t64 on newer releases) and make the folder findable, for govsync only:\n\
         \x20   export LD_LIBRARY_PATH=/opt/oracle/instantclient:$LD_LIBRARY_PATH\n\
         \x20 or for the whole machine:\n\
         \x20   echo /opt/oracle/instantclient > /etc/ld.so.conf.d/oracle-instantclient.conf && ldconfig\n\
         \x20 The govsync container image (Dockerfile) ships Instant Client already.\n\
         \x20 Underlying error: {detail}"
    )
}

impl From<oracle::Error> for SinkError {
    fn from(e: oracle::Error) -> Self {
        use oracle::ErrorKind as K;
        match e.kind() {
            K::OciError => match e.db_error() {
                Some(db) => classify_ora(db.code(), db.message()),
                None => SinkError::Fatal(e.to_string()),
            },
            K::DpiError => {
                let message = e
                    .db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string());
                match e.dpi_code() {
                    Some(code) => classify_dpi(code, &message),
                    None => SinkError::Fatal(message),
                }
            }
            // Array DML with batch errors: the first row's error decides.
            K::BatchErrors => match e.batch_errors().and_then(|v| v.first()) {
                Some(db) => classify_ora(db.code(), db.message()),
                None => SinkError::Fatal(e.to_string()),
            },
            // Type conversions, bind and column indexes: a bug in govsync or a
            // target table whose column types differ from what it expects.
            _ => SinkError::Fatal(format!("Oracle: {e}")),
        }
    }
}

impl From<sqlx::Error> for SinkError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::Database(db) => {
                let msg = db.message().to_string();
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    return classify_sqlstate(pg.code(), pg.constraint(), &msg);
                }
                if let Some(code) = db.code().and_then(|c| c.parse::<i32>().ok())
                    && db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                {
                    return classify_sqlite(code, &msg);
                }
                match db.kind() {
                    sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::NotNullViolation
                    | sqlx::error::ErrorKind::CheckViolation => SinkError::Record {
                        code: db.code().map(|c| c.to_string()),
                        constraint: db.constraint().map(str::to_string),
                        message: msg,
                    },
                    _ => SinkError::Fatal(msg),
                }
            }
            E::Io(e) => SinkError::transient(Transient::Connection, e),
            E::Tls(e) => SinkError::transient(Transient::Connection, e),
            E::PoolTimedOut => SinkError::transient(
                Transient::Timeout,
                "timed out waiting for a database connection",
            ),
            E::PoolClosed => SinkError::Fatal("the database pool was closed".into()),
            E::Protocol(m) => SinkError::transient(Transient::Connection, m),
            E::WorkerCrashed => {
                SinkError::transient(Transient::Connection, "the SQLite worker crashed")
            }
            other => SinkError::Fatal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        let cases = [
            ("40001", "serialization"),
            ("40P01", "deadlock"),
            ("55P03", "lock_wait"),
            ("57014", "timeout"),
            ("57P01", "connection"),
            ("08006", "connection"),
            ("53300", "connection"),
            ("22001", "record"),
            ("23505", "record"),
            ("23514", "record"),
            ("42P01", "fatal"),
            ("42501", "fatal"),
        ];
        for (code, class) in cases {
            assert_eq!(classify_sqlstate(code, None, "m").class(), class, "{code}");
        }
    }

    #[test]
    fn ora_codes() {
        let cases: &[(i32, &str)] = &[
            // connection
            (3113, "connection"),
            (3114, "connection"),
            (3135, "connection"),
            (12170, "connection"),
            (12541, "connection"),
            (12514, "connection"),
            (12537, "connection"),
            (12547, "connection"),
            (1033, "connection"),
            (1034, "connection"),
            (1089, "connection"),
            (28547, "connection"),
            (1092, "connection"),
            (12528, "connection"),
            // timeout, deadlock, lock wait, serialization
            (1013, "timeout"),
            (60, "deadlock"),
            (30006, "lock_wait"),
            (54, "lock_wait"),
            (8177, "serialization"),
            // record-level
            (12899, "record"),
            (1400, "record"),
            (1407, "record"),
            (2290, "record"),
            (2291, "record"),
            (2292, "record"),
            (1, "record"),
            (1438, "record"),
            (1722, "record"),
            (1840, "record"),
            (1841, "record"),
            // fatal
            (942, "fatal"),
            (1017, "fatal"),
            (1031, "fatal"),
            (904, "fatal"),
        ];
        for &(code, class) in cases {
            assert_eq!(classify_ora(code, "m").class(), class, "ORA-{code:05}");
        }
    }

    #[test]
    fn ora_messages_and_codes() {
        match classify_ora(
            1,
            "ORA-00001: unique constraint (GOVSYNC.GOVSYNC_CHANGE_LOG_EVENT_ID) violated",
        ) {
            SinkError::Record {
                code, constraint, ..
            } => {
                assert_eq!(code.as_deref(), Some("ORA-00001"));
                assert_eq!(
                    constraint.as_deref(),
                    Some("GOVSYNC.GOVSYNC_CHANGE_LOG_EVENT_ID")
                );
            }
            other => panic!("{other:?}"),
        }
        match classify_ora(
            12899,
            r#"ORA-12899: value too large for column "GOVSYNC"."CUSTOMER_PROFILE"."ADDRESS" (actual: 250, maximum: 200)"#,
        ) {
            SinkError::Record { constraint, .. } => {
                assert_eq!(
                    constraint.as_deref(),
                    Some("GOVSYNC.CUSTOMER_PROFILE.ADDRESS")
                )
            }
            other => panic!("{other:?}"),
        }
        match classify_ora(
            1400,
            r#"ORA-01400: cannot insert NULL into ("GOVSYNC"."CUSTOMER_PROFILE"."VERSION")"#,
        ) {
            SinkError::Record { constraint, .. } => {
                assert_eq!(
                    constraint.as_deref(),
                    Some("GOVSYNC.CUSTOMER_PROFILE.VERSION")
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(
            classify_ora(942, "ORA-00942: table or view does not exist")
                .to_string()
                .contains("govsync migrate")
        );
        assert!(classify_ora(60, "m").to_string().contains("ORA-00060"));
    }

    #[test]
    fn dpi_codes() {
        let cases: &[(i32, &str)] = &[
            (1010, "connection"),
            (1080, "connection"),
            (1067, "timeout"),
            (1047, "fatal"),
            (1072, "fatal"),
            (1002, "fatal"),
        ];
        for &(code, class) in cases {
            assert_eq!(classify_dpi(code, "m").class(), class, "DPI-{code:04}");
        }
        let missing = classify_dpi(
            1047,
            "DPI-1047: Cannot locate a 64-bit Oracle Client library",
        )
        .to_string();
        for needle in [
            "Instant Client",
            "basiclite",
            "LD_LIBRARY_PATH",
            "ldconfig",
            ORACLE_CLIENT_URL,
            "DPI-1047",
        ] {
            assert!(missing.contains(needle), "{needle} missing from: {missing}");
        }
    }

    #[test]
    fn sqlite_codes() {
        assert_eq!(classify_sqlite(5, "busy").class(), "lock_wait");
        assert_eq!(
            classify_sqlite(275, "CHECK constraint failed").class(),
            "record"
        );
        assert_eq!(classify_sqlite(2067, "UNIQUE").class(), "record");
        assert_eq!(classify_sqlite(13, "full").class(), "fatal");
    }
}
