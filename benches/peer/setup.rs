//! What a benchmark run needs from its environment: sizes, the systems to
//! compare, where the govsync binary, Kafka Connect and the run files are,
//! and the database and broker addresses (scripts/bench-peer sets all of
//! them).

use std::path::PathBuf;

use crate::common;

/// The two ways the Debezium JDBC sink writes a batch to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The default: one upsert statement per record, sent as a JDBC batch.
    JdbcBatch,
    /// `dialect.postgres.unnest.insert.enabled`: one
    /// `INSERT … SELECT FROM UNNEST(arrays) ON CONFLICT DO UPDATE` per batch.
    Unnest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Govsync,
    Debezium(Writer),
}

impl System {
    pub fn label(self) -> &'static str {
        match self {
            System::Govsync => "govsync",
            System::Debezium(Writer::JdbcBatch) => "debezium (jdbc batch)",
            System::Debezium(Writer::Unnest) => "debezium (unnest)",
        }
    }

    /// Short, for schema, topic and group names.
    pub fn tag(self) -> &'static str {
        match self {
            System::Govsync => "g",
            System::Debezium(Writer::JdbcBatch) => "db",
            System::Debezium(Writer::Unnest) => "du",
        }
    }
}

/// The database as `common::pg_url()` names it, in parts.
#[derive(Debug, Clone)]
pub struct Pg {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub db: String,
}

impl Pg {
    /// Parses `postgres://user:password@host:port/db`.
    fn parse(url: &str) -> Pg {
        let parts = || -> Option<Pg> {
            let rest = url.strip_prefix("postgres://")?.split('?').next()?;
            let (login, place) = rest.split_once('@')?;
            let (user, password) = login.split_once(':')?;
            let (hostport, db) = place.split_once('/')?;
            let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
            Some(Pg {
                host: host.into(),
                port: port.parse().ok()?,
                user: user.into(),
                password: password.into(),
                db: db.into(),
            })
        };
        parts()
            .unwrap_or_else(|| panic!("expected postgres://user:password@host:port/db, got {url}"))
    }

    /// The URL without the password (govsync reads it from GOVSYNC_DB_PASSWORD).
    pub fn url_without_password(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.db
        )
    }

    pub fn jdbc_url(&self) -> String {
        format!("jdbc:postgresql://{}:{}/{}", self.host, self.port, self.db)
    }
}

pub struct Setup {
    /// Customers, and address updates (one per customer).
    pub events: usize,
    /// Rounds: govsync, then each Debezium writer.
    pub pairs: usize,
    pub systems: Vec<System>,
    pub kafka: String,
    pub pg: Pg,
    pub govsync_bin: PathBuf,
    /// .services/connect: `lib/` (the worker's jars) and `plugins/`.
    pub connect: PathBuf,
    /// Per-run configs and logs; `running/` lists live processes.
    pub work: PathBuf,
    /// A run fails when no row changed for this long.
    pub stall_secs: u64,
    /// Longest a run may take once its process started.
    pub timeout_secs: u64,
}

impl Setup {
    pub fn from_env() -> Setup {
        let writers = match std::env::var("PEER_DEBEZIUM").as_deref() {
            Ok("jdbc-batch") => vec![Writer::JdbcBatch],
            Ok("unnest") => vec![Writer::Unnest],
            Ok("both") | Err(_) => vec![Writer::JdbcBatch, Writer::Unnest],
            Ok(other) => panic!("PEER_DEBEZIUM: jdbc-batch, unnest or both, not {other}"),
        };
        let mut systems = vec![System::Govsync];
        systems.extend(writers.into_iter().map(System::Debezium));
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let path =
            |var: &str, default: PathBuf| std::env::var_os(var).map_or(default, PathBuf::from);
        Setup {
            events: common::env_usize("PEER_EVENTS", 400_000),
            pairs: common::env_usize("PEER_PAIRS", 3),
            systems,
            kafka: std::env::var("GOVSYNC_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            pg: Pg::parse(&common::pg_url()),
            govsync_bin: path("PEER_GOVSYNC_BIN", root.join("target/release/govsync")),
            connect: path("PEER_CONNECT_DIR", root.join(".services/connect")),
            work: path("PEER_WORK_DIR", root.join(".services/peer")),
            stall_secs: common::env_usize("PEER_STALL_SECS", 300) as u64,
            timeout_secs: common::env_usize("PEER_RUN_TIMEOUT_SECS", 1800) as u64,
        }
    }

    /// Panics, saying how to get them, if the binary or Connect are missing.
    pub fn check_installed(&self) {
        let hint = "run scripts/bench-peer, which builds and fetches them";
        assert!(
            self.govsync_bin.is_file(),
            "no govsync binary at {} ({hint})",
            self.govsync_bin.display()
        );
        for dir in ["lib", "plugins/debezium-connector-jdbc"] {
            let d = self.connect.join(dir);
            assert!(d.is_dir(), "no {} ({hint})", d.display());
        }
    }
}
