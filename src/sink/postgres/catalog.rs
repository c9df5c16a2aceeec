//! The target table as PostgreSQL's catalog describes it (for
//! [`crate::sink::table::resolve`]).

use sqlx::Row as _;

use crate::sink::SinkResult;
use crate::sink::table::{Catalog, CatalogColumn, SqlType, quote};

/// Reads the catalog of `table` (as configured: `name` or `schema.name`,
/// unquoted names folded as PostgreSQL folds them, else as written):
/// information_schema's columns, and the unique indexes of one column.
/// Returns how SQL names the table and what it holds.
pub(super) async fn read_catalog(
    pool: &sqlx::PgPool,
    table: &str,
) -> SinkResult<Option<(String, Catalog)>> {
    let quoted = table.split('.').map(quote).collect::<Vec<_>>().join(".");
    let mut found = None;
    for name in [table.to_string(), quoted] {
        found = sqlx::query(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
        )
        .bind(&name)
        .fetch_optional(pool)
        .await?;
        if found.is_some() {
            break;
        }
    }
    let Some(found) = found else { return Ok(None) };
    let oid: i64 = found.try_get(0)?;
    let (schema, name): (String, String) = (found.try_get(1)?, found.try_get(2)?);
    let rows = sqlx::query(
        "SELECT column_name::text, data_type::text, character_maximum_length::int8, \
         numeric_scale::int8, datetime_precision::int8 FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(&schema)
    .bind(&name)
    .fetch_all(pool)
    .await?;
    let mut catalog = Catalog::default();
    for r in &rows {
        let n = |i| r.try_get::<Option<i64>, _>(i).map(|v| v.map(|v| v as u32));
        let data_type: String = r.try_get(1)?;
        let ty = match data_type.as_str() {
            "character varying" | "text" | "character" => SqlType::Text { len: n(2)? },
            "double precision" => SqlType::Float,
            // An unconstrained NUMERIC keeps 15 significant digits of a
            // double: ten decimals is what survives the round trip.
            "numeric" => SqlType::Decimal {
                scale: n(3)?.unwrap_or(10),
            },
            "smallint" | "integer" | "bigint" => SqlType::Integer,
            "boolean" => SqlType::Boolean,
            "timestamp with time zone" => SqlType::TimestampTz {
                digits: n(4)?.unwrap_or(6),
            },
            "timestamp without time zone" => SqlType::Timestamp {
                digits: n(4)?.unwrap_or(6),
            },
            other => SqlType::Other(other.to_string()),
        };
        catalog.columns.push(CatalogColumn {
            name: r.try_get(0)?,
            ty,
        });
    }
    catalog.unique = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
         ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = $1::oid AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL",
    )
    .bind(oid)
    .fetch_all(pool)
    .await?;
    Ok(Some((
        format!("{}.{}", quote(&schema), quote(&name)),
        catalog,
    )))
}
