//! The target table as SQLite describes it (`pragma_table_info` and its
//! indexes), for [`crate::sink::table::resolve`].

use sqlx::Row as _;

use crate::sink::SinkResult;
use crate::sink::table::{Catalog, CatalogColumn, SqlType, quote};

/// The catalog of `table` (`name` or `schema.name`): `pragma_table_info`
/// and the unique indexes of one column (`pragma_index_list`/`_info`).
pub(super) async fn read_catalog(
    pool: &sqlx::SqlitePool,
    table: &str,
) -> SinkResult<Option<(String, Catalog)>> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (s, n),
        None => ("main", table),
    };
    let rows = sqlx::query("SELECT name, type, pk FROM pragma_table_info(?1, ?2) ORDER BY cid")
        .bind(name)
        .bind(schema)
        .fetch_all(pool)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut catalog = Catalog::default();
    let mut pk = Vec::new();
    for r in &rows {
        let col: String = r.try_get(0)?;
        if r.try_get::<i64, _>(2)? > 0 {
            pk.push(col.clone());
        }
        catalog.columns.push(CatalogColumn {
            name: col,
            ty: declared_type(&r.try_get::<String, _>(1)?),
        });
    }
    if pk.len() == 1 {
        catalog.unique.extend(pk);
    }
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM pragma_index_list(?1, ?2) WHERE \"unique\" = 1 AND partial = 0",
    )
    .bind(name)
    .bind(schema)
    .fetch_all(pool)
    .await?;
    for idx in indexes {
        let cols: Vec<Option<String>> =
            sqlx::query_scalar("SELECT name FROM pragma_index_info(?1, ?2)")
                .bind(&idx)
                .bind(schema)
                .fetch_all(pool)
                .await?;
        if let [Some(c)] = cols.as_slice() {
            catalog.unique.push(c.clone());
        }
    }
    let sql_name = match table.split_once('.') {
        Some((s, n)) => format!("{}.{}", quote(s), quote(n)),
        None => quote(table),
    };
    Ok(Some((sql_name, catalog)))
}

/// A declared SQLite type in the adapters' terms (SQLite keeps the text of
/// the declaration; its affinity rules decide little here).
fn declared_type(t: &str) -> SqlType {
    let u = t.to_ascii_uppercase();
    let args: Vec<u32> = u
        .split_once('(')
        .map(|(_, a)| {
            a.trim_end_matches(')')
                .split(',')
                .filter_map(|x| x.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if u.contains("WITH TIME ZONE") || u.contains("TIMESTAMPTZ") {
        SqlType::TimestampTz { digits: 6 }
    } else if u.contains("TIMESTAMP") || u.contains("DATETIME") {
        SqlType::Timestamp {
            digits: args.first().copied().unwrap_or(6).min(6),
        }
    } else if u.contains("DATE") {
        SqlType::DateTime
    } else if u.contains("BOOL") {
        SqlType::Boolean
    } else if u.contains("CHAR") || u.contains("CLOB") || u.contains("TEXT") {
        SqlType::Text {
            len: args.first().copied(),
        }
    } else if u.contains("INT") {
        SqlType::Integer
    } else if u.contains("REAL") || u.contains("FLOA") || u.contains("DOUB") {
        SqlType::Float
    } else if u.contains("NUMERIC") || u.contains("DECIMAL") || u.contains("NUMBER") {
        SqlType::Decimal {
            scale: match args.as_slice() {
                [_, s] => *s,
                [_] => 0,
                _ => 10,
            },
        }
    } else {
        SqlType::Other(if t.is_empty() {
            "a column without a declared type".into()
        } else {
            t.to_string()
        })
    }
}
