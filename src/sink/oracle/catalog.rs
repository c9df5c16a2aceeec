//! The target table as Oracle's data dictionary describes it: its columns
//! (ALL_TAB_COLUMNS) and the columns that alone carry a primary key, a
//! unique constraint or a unique index, read into a [`Catalog`] for
//! [`crate::sink::table::resolve`].
//!
//! `database.target_table` is `TABLE` or `OWNER.TABLE`; without an owner
//! the table is looked for in `database.schema`, else in the session's
//! current schema. Each name is matched as Oracle folds an unquoted
//! identifier (upper case) first, then as written (a table created with a
//! quoted lower-case name).

use oracle::Connection;

use super::binds::{Binds, s};
use super::exec::{params, query};
use crate::sink::SinkResult;
use crate::sink::table::{Catalog, CatalogColumn, SqlType, quote};

const CURRENT_SCHEMA: &str = "SELECT SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA') FROM dual";

const COLUMNS: &str = "SELECT column_name, data_type, char_length, data_precision, data_scale \
    FROM all_tab_columns WHERE owner = :p_owner AND table_name = :p_table ORDER BY column_id";

/// Columns with a unique index or an enabled primary key / unique
/// constraint of their own (one column).
const UNIQUE: &str = "SELECT MIN(ic.column_name) FROM all_indexes i \
    JOIN all_ind_columns ic ON ic.index_owner = i.owner AND ic.index_name = i.index_name \
    WHERE i.table_owner = :p_owner AND i.table_name = :p_table AND i.uniqueness = 'UNIQUE' \
    GROUP BY i.owner, i.index_name HAVING COUNT(*) = 1 \
    UNION \
    SELECT MIN(cc.column_name) FROM all_constraints k \
    JOIN all_cons_columns cc ON cc.owner = k.owner AND cc.constraint_name = k.constraint_name \
    WHERE k.owner = :p_owner_k AND k.table_name = :p_table_k AND k.constraint_type IN ('P', 'U') \
    AND k.status = 'ENABLED' GROUP BY k.owner, k.constraint_name HAVING COUNT(*) = 1";

/// One row of ALL_TAB_COLUMNS, as far as the adapters care.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnRow {
    pub name: String,
    /// DATA_TYPE: `VARCHAR2`, `NUMBER`, `TIMESTAMP(6) WITH TIME ZONE` …
    pub data_type: String,
    /// CHAR_LENGTH: characters of a character column.
    pub char_length: Option<i64>,
    /// DATA_PRECISION and DATA_SCALE of a NUMBER (NULL for a bare NUMBER;
    /// INTEGER is precision NULL, scale 0). DATA_SCALE is also a
    /// TIMESTAMP's fractional digits.
    pub precision: Option<i64>,
    pub scale: Option<i64>,
}

/// A column's Oracle type in the adapters' terms.
pub fn sql_type(c: &ColumnRow) -> SqlType {
    let t = c.data_type.to_ascii_uppercase();
    // The fraction's digits of a TIMESTAMP(n) …, from the type's own text.
    let digits = || {
        t.split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .and_then(|(n, _)| n.trim().parse().ok())
            .or_else(|| c.scale.and_then(|s| u32::try_from(s).ok()))
            .unwrap_or(6)
    };
    match t.as_str() {
        // CHAR(n) pads with blanks: a value read back would differ from the
        // one written, and every verification would fail. CHAR(1) is the
        // Y/N flag's column.
        "CHAR" | "NCHAR" if c.char_length.is_some_and(|n| n > 1) => SqlType::Other(format!(
            "{t}({}) (blank-padded: use VARCHAR2)",
            c.char_length.unwrap_or_default()
        )),
        "VARCHAR2" | "NVARCHAR2" | "CHAR" | "NCHAR" => SqlType::Text {
            len: c
                .char_length
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0),
        },
        "CLOB" | "NCLOB" => SqlType::Text { len: None },
        "BINARY_DOUBLE" => SqlType::Float,
        // A single-precision float would not give a double back.
        "BINARY_FLOAT" => SqlType::Other("BINARY_FLOAT (single precision)".into()),
        // FLOAT(b) is a decimal NUMBER of b binary digits, without a scale:
        // ten decimals survive a double's round trip, as for a bare NUMBER.
        "FLOAT" => SqlType::Decimal { scale: 10 },
        "NUMBER" => match (c.precision, c.scale) {
            (_, Some(s)) if s >= 0 => SqlType::Decimal { scale: s as u32 },
            (None, None) => SqlType::Decimal { scale: 10 },
            // A negative scale rounds to tens, hundreds …: nothing govsync
            // writes survives it.
            _ => SqlType::Other(format!(
                "NUMBER({}, {})",
                c.precision.unwrap_or(38),
                c.scale.unwrap_or(0)
            )),
        },
        "DATE" => SqlType::DateTime,
        "BOOLEAN" => SqlType::Boolean,
        _ if t.starts_with("TIMESTAMP") && t.ends_with("TIME ZONE") => {
            // Also WITH LOCAL TIME ZONE: both hold an instant.
            SqlType::TimestampTz { digits: digits() }
        }
        _ if t.starts_with("TIMESTAMP") && !t.contains("WITH") => {
            SqlType::Timestamp { digits: digits() }
        }
        _ => SqlType::Other(c.data_type.clone()),
    }
}

/// `OWNER.TABLE` of the config split into owner and table.
fn split_target(target_table: &str) -> (Option<&str>, &str) {
    match target_table.split_once('.') {
        Some((owner, table)) => (Some(owner), table),
        None => (None, target_table),
    }
}

/// The spellings a configured name may have in the dictionary: as Oracle
/// folds it unquoted, then as written.
fn spellings(name: &str) -> Vec<String> {
    let upper = name.to_uppercase();
    if upper == name {
        vec![upper]
    } else {
        vec![upper, name.to_string()]
    }
}

/// Reads the catalog of `target_table` (as configured; `schema` is
/// `database.schema`). Returns how SQL names the table (quoted, with its
/// owner) and what it holds, or `None` when no such table is visible.
pub(super) fn read_catalog(
    conn: &Connection,
    target_table: &str,
    schema: Option<&str>,
) -> SinkResult<Option<(String, Catalog)>> {
    let (owner, table) = split_target(target_table);
    let owners = match owner.or(schema) {
        Some(o) => spellings(o),
        None => query(conn, CURRENT_SCHEMA, &[], |r| r.get::<_, String>(0))?,
    };
    for owner in &owners {
        for table in spellings(table) {
            let binds: Binds = vec![("p_owner", s(owner)), ("p_table", s(&table))];
            let columns = query(conn, COLUMNS, &params(&binds), |r| {
                Ok(ColumnRow {
                    name: r.get(0)?,
                    data_type: r.get(1)?,
                    char_length: r.get(2)?,
                    precision: r.get(3)?,
                    scale: r.get(4)?,
                })
            })?;
            if columns.is_empty() {
                continue;
            }
            let binds: Binds = vec![
                ("p_owner", s(owner)),
                ("p_table", s(&table)),
                ("p_owner_k", s(owner)),
                ("p_table_k", s(&table)),
            ];
            let mut unique = query(conn, UNIQUE, &params(&binds), |r| r.get::<_, String>(0))?;
            unique.sort();
            unique.dedup();
            let catalog = Catalog {
                columns: columns
                    .iter()
                    .map(|c| CatalogColumn {
                        name: c.name.clone(),
                        ty: sql_type(c),
                    })
                    .collect(),
                unique,
            };
            return Ok(Some((
                format!("{}.{}", quote(owner), quote(&table)),
                catalog,
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{col, placeholders};
    use super::*;

    fn ty(
        data_type: &str,
        char_length: i64,
        precision: Option<i64>,
        scale: Option<i64>,
    ) -> SqlType {
        sql_type(&col("C", data_type, char_length, precision, scale))
    }

    #[test]
    fn oracle_types_in_the_adapters_terms() {
        for t in ["VARCHAR2", "NVARCHAR2"] {
            assert_eq!(
                ty(t, 20, None, None),
                SqlType::Text { len: Some(20) },
                "{t}"
            );
        }
        assert!(
            matches!(ty("CHAR", 20, None, None), SqlType::Other(s) if s.contains("blank-padded")),
            "a padded CHAR(20) is refused"
        );
        assert_eq!(ty("CHAR", 1, None, None), SqlType::Text { len: Some(1) });
        assert_eq!(ty("CLOB", 0, None, None), SqlType::Text { len: None });
        assert_eq!(ty("NCLOB", 0, None, None), SqlType::Text { len: None });
        assert_eq!(ty("BINARY_DOUBLE", 0, None, None), SqlType::Float);
        assert!(matches!(
            ty("BINARY_FLOAT", 0, None, None),
            SqlType::Other(_)
        ));
        assert_eq!(
            ty("FLOAT", 0, Some(126), None),
            SqlType::Decimal { scale: 10 }
        );
        assert_eq!(
            ty("NUMBER", 0, Some(3), Some(2)),
            SqlType::Decimal { scale: 2 }
        );
        assert_eq!(
            ty("NUMBER", 0, Some(1), Some(0)),
            SqlType::Decimal { scale: 0 }
        );
        assert_eq!(
            ty("NUMBER", 0, Some(19), Some(0)),
            SqlType::Decimal { scale: 0 }
        );
        // INTEGER.
        assert_eq!(
            ty("NUMBER", 0, None, Some(0)),
            SqlType::Decimal { scale: 0 }
        );
        assert_eq!(ty("NUMBER", 0, None, None), SqlType::Decimal { scale: 10 });
        assert!(matches!(
            ty("NUMBER", 0, Some(5), Some(-2)),
            SqlType::Other(_)
        ));
        assert_eq!(ty("DATE", 0, None, None), SqlType::DateTime);
        assert_eq!(
            ty("TIMESTAMP(6)", 0, None, Some(6)),
            SqlType::Timestamp { digits: 6 }
        );
        assert_eq!(
            ty("TIMESTAMP(0)", 0, None, Some(0)),
            SqlType::Timestamp { digits: 0 }
        );
        assert_eq!(
            ty("TIMESTAMP(3) WITH TIME ZONE", 0, None, Some(3)),
            SqlType::TimestampTz { digits: 3 }
        );
        assert_eq!(
            ty("TIMESTAMP(9) WITH LOCAL TIME ZONE", 0, None, Some(9)),
            SqlType::TimestampTz { digits: 9 }
        );
        // The digits from DATA_SCALE when the type's text has none.
        assert_eq!(
            ty("TIMESTAMP", 0, None, Some(3)),
            SqlType::Timestamp { digits: 3 }
        );
        assert_eq!(ty("BOOLEAN", 0, None, None), SqlType::Boolean);
        assert_eq!(
            ty("INTERVAL DAY(2) TO SECOND(6)", 0, None, None),
            SqlType::Other("INTERVAL DAY(2) TO SECOND(6)".into())
        );
        assert_eq!(ty("RAW", 16, None, None), SqlType::Other("RAW".into()));
    }

    #[test]
    fn target_names_fold_like_unquoted_identifiers_then_as_written() {
        assert_eq!(split_target("crm.cust_base"), (Some("crm"), "cust_base"));
        assert_eq!(split_target("CUST_BASE"), (None, "CUST_BASE"));
        assert_eq!(spellings("cust_base"), ["CUST_BASE", "cust_base"]);
        assert_eq!(spellings("CUST_BASE"), ["CUST_BASE"]);
        assert_eq!(spellings("Cust_Base"), ["CUST_BASE", "Cust_Base"]);
    }

    #[test]
    fn dictionary_queries_bind_owner_and_table() {
        assert_eq!(placeholders(COLUMNS), ["p_owner", "p_table"]);
        assert_eq!(
            placeholders(UNIQUE),
            ["p_owner", "p_table", "p_owner_k", "p_table_k"]
        );
        assert!(placeholders(CURRENT_SCHEMA).is_empty());
    }
}
