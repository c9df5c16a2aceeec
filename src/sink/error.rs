//! Database errors, classified in code (SQLSTATE, SQLite result codes, ORA
//! numbers), never by matching message text. The class decides: retry the
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
