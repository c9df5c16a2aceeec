//! Statement helpers: execute one statement, array DML, queries, queries
//! over an id list, and decoding a row of the target table into govsync's
//! logical fields. They are synchronous and run on blocking threads only
//! (see [`super::blocking`]).

use chrono::{DateTime, NaiveDateTime, Utc};
use oracle::Connection;
use oracle::sql_type::{Collection, ToSql};

use super::binds::{Bind, Binds, column_types, key_binds};
use super::sql::Read;
use crate::event::{Row, Value};
use crate::sink::table::Adapter;
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

/// A read column as fetched: the Oracle type [`super::sql`]'s read
/// expression gives each adapter.
#[derive(Debug, Clone, PartialEq)]
enum Fetched {
    Text(Option<String>),
    Double(Option<f64>),
    /// A boolean as 1/0 (a number column as stored).
    Number(Option<i64>),
    /// A time, already in UTC.
    Utc(Option<NaiveDateTime>),
}

fn fetch(r: &oracle::Row, i: usize, adapter: Adapter) -> oracle::Result<Fetched> {
    Ok(match adapter {
        Adapter::Text | Adapter::TimeText => Fetched::Text(r.get(i)?),
        Adapter::Float | Adapter::Decimal { .. } | Adapter::Integer => Fetched::Double(r.get(i)?),
        Adapter::Bool | Adapter::BoolNumber | Adapter::BoolYn => Fetched::Number(r.get(i)?),
        Adapter::TimeTz { .. } | Adapter::TimeLocal { .. } => Fetched::Utc(r.get(i)?),
    })
}

/// A fetched value as govsync's logical value. A value the adapter does
/// not produce (text that is no RFC 3339 time) reads as NULL, which the
/// verification reports.
fn logical(adapter: Adapter, f: Fetched) -> Value {
    let v = match (adapter, f) {
        (Adapter::TimeText, Fetched::Text(s)) => s
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| Value::Time(t.with_timezone(&Utc))),
        (_, Fetched::Text(s)) => s.map(Value::Text),
        (_, Fetched::Double(x)) => x.map(Value::Float),
        (_, Fetched::Number(n)) => n.map(|n| Value::Bool(n != 0)),
        (_, Fetched::Utc(t)) => t.map(|t| Value::Time(t.and_utc())),
    };
    v.unwrap_or(Value::Null)
}

/// A row of `Sql::lock_rows` / `Sql::read_rows`: the key, then `reads`.
pub(super) fn row_from(reads: &[Read], r: &oracle::Row) -> oracle::Result<(String, Row)> {
    let mut row = Row::default();
    for (i, read) in reads.iter().enumerate() {
        let i = i + 1;
        match *read {
            Read::Field(c, adapter) => row.set(c, &logical(adapter, fetch(r, i, adapter)?)),
            Read::LastUpdate(adapter) => {
                row.last_update = match logical(adapter, fetch(r, i, adapter)?) {
                    Value::Time(t) => Some(t),
                    _ => None,
                }
            }
            Read::Version => row.version = r.get::<_, Option<i64>>(i)?.unwrap_or(0),
        }
    }
    Ok((r.get(0)?, row))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fetched_values_become_logical_values_whatever_the_adapter() {
        let text = |s: &str| Fetched::Text(Some(s.into()));
        assert_eq!(
            logical(Adapter::Text, text("江苏省")),
            Value::Text("江苏省".into())
        );
        assert_eq!(
            logical(Adapter::Decimal { scale: 2 }, Fetched::Double(Some(0.93))),
            Value::Float(0.93)
        );
        assert_eq!(logical(Adapter::Float, Fetched::Double(None)), Value::Null);
        // 0/1 as stored, and Y/N as the read expression turns it.
        for a in [Adapter::BoolNumber, Adapter::BoolYn] {
            assert_eq!(logical(a, Fetched::Number(Some(1))), Value::Bool(true));
            assert_eq!(logical(a, Fetched::Number(Some(0))), Value::Bool(false));
            assert_eq!(logical(a, Fetched::Number(None)), Value::Null);
        }
        // Times arrive in UTC (SYS_EXTRACT_UTC), DATE and TIMESTAMP too.
        let t = utc("2024-01-15T02:20:00.123456Z");
        for a in [
            Adapter::TimeTz { digits: 6 },
            Adapter::TimeLocal { digits: 0 },
        ] {
            assert_eq!(
                logical(a, Fetched::Utc(Some(t.naive_utc()))),
                Value::Time(t)
            );
        }
        assert_eq!(
            logical(Adapter::TimeText, text("2024-01-15T02:20:00.123456Z")),
            Value::Time(t)
        );
        assert_eq!(
            logical(Adapter::TimeText, text("2024-01-15T10:20:00.123456+08:00")),
            Value::Time(t)
        );
        assert_eq!(logical(Adapter::TimeText, text("yesterday")), Value::Null);
    }
}
