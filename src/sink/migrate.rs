//! Migrations embedded in the binary (a deployed govsync has no
//! `migrations/` folder), run by sqlx's migrator.

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// One embedded migration: version, description, SQL.
pub type Embedded = (i64, &'static str, &'static str);

#[derive(Debug)]
struct EmbeddedSource(&'static [Embedded]);

impl<'s> MigrationSource<'s> for EmbeddedSource {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(v, d, sql)| {
                    Migration::new(
                        *v,
                        Cow::Borrowed(*d),
                        MigrationType::Simple,
                        sqlx::SqlSafeStr::into_sql_str(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// A migrator over embedded migrations, tracked in `table`.
pub async fn migrator(
    migrations: &'static [Embedded],
    table: &'static str,
) -> Result<Migrator, sqlx::migrate::MigrateError> {
    let mut m = Migrator::new(EmbeddedSource(migrations)).await?;
    m.dangerous_set_table_name(table);
    Ok(m)
}

/// Runs govsync's migrations (and, with `with_target_table`, the dev
/// target table's) on a sqlx pool; returns what was applied.
pub async fn run_sqlx<DB>(
    pool: &sqlx::Pool<DB>,
    govsync: &'static [Embedded],
    dev: &'static [Embedded],
    with_target_table: bool,
) -> super::SinkResult<Vec<String>>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    use super::SinkError;
    let mut sets = vec![(govsync, TABLE, "govsync tables")];
    if with_target_table {
        sets.push((dev, DEV_TABLE, "customer_profile (dev)"));
    }
    let mut done = Vec::new();
    for (migrations, table, what) in sets {
        migrator(migrations, table)
            .await
            .map_err(|e| SinkError::Fatal(e.to_string()))?
            .run(pool)
            .await
            .map_err(|e| SinkError::Fatal(format!("migration failed: {e}")))?;
        done.push(what.to_string());
    }
    Ok(done)
}

pub const POSTGRES: &[Embedded] = &[
    (
        1,
        "govsync tables",
        include_str!("../../migrations/postgres/0001_govsync_tables.sql"),
    ),
    (
        2,
        "lean batches",
        include_str!("../../migrations/postgres/0002_lean_batches.sql"),
    ),
    (
        3,
        "row version",
        include_str!("../../migrations/postgres/0003_row_version.sql"),
    ),
    (
        4,
        "review items",
        include_str!("../../migrations/postgres/0004_review_items.sql"),
    ),
    (
        5,
        "review decisions",
        include_str!("../../migrations/postgres/0005_review_decisions.sql"),
    ),
];
pub const POSTGRES_DEV: &[Embedded] = &[(
    1,
    "customer_profile (dev)",
    include_str!("../../migrations/postgres/dev_0001_customer_profile.sql"),
)];
pub const SQLITE: &[Embedded] = &[
    (
        1,
        "govsync tables",
        include_str!("../../migrations/sqlite/0001_govsync_tables.sql"),
    ),
    (
        2,
        "lean batches",
        include_str!("../../migrations/sqlite/0002_lean_batches.sql"),
    ),
    (
        3,
        "row version",
        include_str!("../../migrations/sqlite/0003_row_version.sql"),
    ),
    (
        4,
        "review items",
        include_str!("../../migrations/sqlite/0004_review_items.sql"),
    ),
    (
        5,
        "review decisions",
        include_str!("../../migrations/sqlite/0005_review_decisions.sql"),
    ),
];
pub const SQLITE_DEV: &[Embedded] = &[(
    1,
    "customer_profile (dev)",
    include_str!("../../migrations/sqlite/dev_0001_customer_profile.sql"),
)];

/// Table tracking govsync's migrations.
pub const TABLE: &str = "govsync_migrations";
/// Table tracking the dev-only target table migration.
pub const DEV_TABLE: &str = "govsync_dev_migrations";
