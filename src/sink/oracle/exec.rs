//! Statement helpers: execute one statement, array DML, queries, queries
//! over an id list, and reading a row of the target table. They are
//! synchronous and run on blocking threads only (see [`super::blocking`]).

use chrono::{DateTime, NaiveDateTime, Utc};
use oracle::Connection;
use oracle::sql_type::{Collection, ToSql};

use super::binds::{Bind, Binds, column_types, key_binds};
use crate::event::Row;
use crate::sink::{PartitionKey, SinkResult};

/// The collection type ids are bound as: a VARRAY(32767) OF VARCHAR2(4000)
/// that every Oracle database has and grants to PUBLIC.
pub const ID_LIST_TYPE: &str = "SYS.ODCIVARCHAR2LIST";
/// Ids per collection bind (the VARRAY's limit is 32767).
const ID_CHUNK: usize = 30_000;
/// Rows per fetch round trip of multi-row queries.
const FETCH_ROWS: u32 = 1000;

pub(super) fn params<'a>(binds: &'a [(&'static str, Bind)]) -> Vec<&'a dyn ToSql> {
    binds.iter().map(|(_, b)| b as &dyn ToSql).collect()
}

/// Executes one statement; returns the rows it changed.
pub(super) fn exec(
    conn: &Connection,
    sql: &str,
    binds: &[(&'static str, Bind)],
) -> SinkResult<u64> {
    let stmt = conn.execute(sql, &params(binds))?;
    Ok(stmt.row_count()?)
}

/// Array DML: all rows in one round trip. Returns the rows changed.
pub(super) fn exec_many(conn: &Connection, sql: &str, rows: &[Binds]) -> SinkResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut builder = conn.batch(sql, rows.len());
    builder.with_row_counts();
    let mut batch = builder.build()?;
    for (i, ty) in column_types(rows).iter().enumerate() {
        batch.set_type(i + 1, ty)?;
    }
    for row in rows {
        // The last row fills the batch, which sends it.
        batch.append_row(&params(row))?;
    }
    batch.execute()?;
    Ok(batch.row_counts()?.iter().sum())
}

/// Runs a query and maps every row.
pub(super) fn query<T>(
    conn: &Connection,
    sql: &str,
    binds: &[&dyn ToSql],
    mut f: impl FnMut(&oracle::Row) -> oracle::Result<T>,
) -> SinkResult<Vec<T>> {
    let mut stmt = conn.statement(sql).fetch_array_size(FETCH_ROWS).build()?;
    let mut out = Vec::new();
    for row in stmt.query(binds)? {
        out.push(f(&row?)?);
    }
    Ok(out)
}

/// Runs a query that takes the id list, in chunks the collection can hold.
pub(super) fn query_ids<T>(
    conn: &Connection,
    sql: &str,
    ids: &[String],
    mut f: impl FnMut(&oracle::Row) -> oracle::Result<T>,
) -> SinkResult<Vec<T>> {
    let mut out = Vec::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let ty = conn.object_type(ID_LIST_TYPE)?;
    for chunk in ids.chunks(ID_CHUNK) {
        let mut list: Collection = ty.new_collection()?;
        for id in chunk {
            list.push(id)?;
        }
        out.extend(query(conn, sql, &[&list], &mut f)?);
    }
    Ok(out)
}

fn utc(t: Option<NaiveDateTime>) -> Option<DateTime<Utc>> {
    t.map(|t| t.and_utc())
}

/// A row of `ROW_SELECT`.
pub(super) fn row_from(r: &oracle::Row) -> oracle::Result<(String, Row)> {
    Ok((
        r.get(0)?,
        Row {
            address: r.get(1)?,
            geo_lat: r.get(2)?,
            geo_lon: r.get(3)?,
            geo_accuracy: r.get(4)?,
            id_card: r.get(5)?,
            phone: r.get(6)?,
            carrier_info: r.get(7)?,
            quality_score: r.get(8)?,
            validation_status: r.get(9)?,
            review_flag: r.get::<_, Option<i64>>(10)?.map(|v| v != 0),
            review_priority: r.get(11)?,
            last_governance_time: utc(r.get(12)?),
            last_update: utc(r.get(13)?),
            version: r.get::<_, Option<i64>>(14)?.unwrap_or(0),
        },
    ))
}

pub(super) fn read_watermark(
    conn: &Connection,
    sql: &str,
    key: &PartitionKey,
) -> SinkResult<Option<i64>> {
    let binds = key_binds(key);
    Ok(query(conn, sql, &params(&binds), |r| r.get::<_, i64>(0))?
        .into_iter()
        .next())
}
