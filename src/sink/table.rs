//! The business's own table: `database.mapping` resolved against the
//! table's columns as the database's catalog describes them.
//!
//! govsync thinks in logical fields ([`Column`], the row image [`Row`], the
//! change log's images); the table has its own names and encodings. At
//! start-up each sink reads its catalog (information_schema on PostgreSQL,
//! `pragma_table_info` on SQLite, ALL_TAB_COLUMNS on Oracle) into a
//! [`Catalog`], and [`resolve`] checks the mapping against it: every mapped
//! column exists, an [`Adapter`] can write the field into the column's
//! type, the key is text with a unique index of its own. Every problem is
//! reported at once, each naming the column and the fix. The resulting
//! [`TableMap`] is what the sinks build their SQL from (names quoted in the
//! catalog's own spelling, never text from an event) and what the plan
//! normalises values with ([`TableMap::normalize`]), so that a value is
//! planned, logged and verified exactly as the column stores it.

use chrono::{DateTime, FixedOffset, NaiveDateTime, SubsecRound, TimeZone, Utc};

use crate::config::TableMapping;
use crate::event::{Column, Value};

/// A column's type as the catalog describes it, in the terms the adapters
/// need.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlType {
    /// VARCHAR, TEXT, CLOB, CHAR(n): `len` in characters where bounded.
    Text {
        len: Option<u32>,
    },
    /// An IEEE float (DOUBLE PRECISION, REAL, BINARY_DOUBLE, FLOAT).
    Float,
    /// A decimal with `scale` digits after the point (NUMERIC(p,s),
    /// NUMBER(p,s)); `scale` 0 for NUMBER(p).
    Decimal {
        scale: u32,
    },
    /// An integer type (INTEGER, SMALLINT, BIGINT; SQLite's INTEGER).
    Integer,
    Boolean,
    /// TIMESTAMP WITH TIME ZONE (`digits` of the fraction kept).
    TimestampTz {
        digits: u32,
    },
    /// TIMESTAMP without a zone: local time in `database.mapping.zone`.
    Timestamp {
        digits: u32,
    },
    /// Oracle's DATE: local time to the second.
    DateTime,
    /// Anything else, by the catalog's name (reported, never written).
    Other(String),
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlType::Text { len: Some(n) } => write!(f, "text({n})"),
            SqlType::Text { len: None } => f.write_str("text"),
            SqlType::Float => f.write_str("float"),
            SqlType::Decimal { scale } => write!(f, "decimal(scale {scale})"),
            SqlType::Integer => f.write_str("integer"),
            SqlType::Boolean => f.write_str("boolean"),
            SqlType::TimestampTz { .. } => f.write_str("timestamp with time zone"),
            SqlType::Timestamp { .. } => f.write_str("timestamp without time zone"),
            SqlType::DateTime => f.write_str("date"),
            SqlType::Other(s) => f.write_str(s),
        }
    }
}

/// One column of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogColumn {
    /// As the catalog spells it.
    pub name: String,
    pub ty: SqlType,
}

/// What the catalog says about the target table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    pub columns: Vec<CatalogColumn>,
    /// Columns that alone carry a primary key or a (non-partial) unique
    /// index.
    pub unique: Vec<String>,
}

impl Catalog {
    /// The column named `name`: the exact spelling, else the one column
    /// whose name differs only in case (an unquoted name in the config
    /// matches an upper-case Oracle or a lower-case PostgreSQL column).
    fn find(&self, name: &str) -> Option<&CatalogColumn> {
        self.columns.iter().find(|c| c.name == name).or_else(|| {
            let mut same = self
                .columns
                .iter()
                .filter(|c| c.name.eq_ignore_ascii_case(name));
            match (same.next(), same.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        })
    }
}

/// How a logical value is stored in its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    Text,
    Float,
    /// Rounded to `scale` decimals before it is planned.
    Decimal {
        scale: u32,
    },
    /// A boolean as BOOLEAN.
    Bool,
    /// A boolean as 1 / 0 in a number column.
    BoolNumber,
    /// A boolean as 'Y' / 'N' in a one-character column.
    BoolYn,
    /// A time as TIMESTAMP WITH TIME ZONE, kept to `digits`.
    TimeTz {
        digits: u32,
    },
    /// A time as local time in the mapping's zone, kept to `digits`
    /// (TIMESTAMP; Oracle DATE with 0).
    TimeLocal {
        digits: u32,
    },
    /// A time as RFC 3339 text in UTC with microseconds (an unbounded text
    /// column: SQLite's TEXT, how the SQLite dev table keeps times).
    TimeText,
    /// The version: an integer.
    Integer,
}

/// A field's column and how values are written into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The column as the catalog spells it.
    pub column: String,
    pub adapter: Adapter,
}

impl Mapped {
    /// The column's name quoted for SQL (in the catalog's spelling, so it
    /// is the same column on every database whatever its case).
    pub fn quoted(&self) -> String {
        quote(&self.column)
    }
}

/// A name quoted for SQL. Names come from the catalog, matched against
/// checked identifiers; a `"` is doubled all the same.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The mapping resolved against the table: what the sinks build SQL from.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMap {
    /// The table, quoted and qualified as SQL should name it.
    pub table: String,
    /// The key column (text), as spelt in the catalog.
    pub key: String,
    /// By position in [`Column::ALL`]; `None` when not mapped.
    pub fields: [Option<Mapped>; 12],
    /// Column an insert fills with the event's name.
    pub name: Option<String>,
    /// The table's own version column; `None`: the count is kept in
    /// `govsync_row_state.version`.
    pub version: Option<String>,
    /// The business's last-update time (read only).
    pub last_update: Option<Mapped>,
    /// Offset of the columns without a zone.
    pub zone: FixedOffset,
}

impl TableMap {
    /// The development table `customer_profile` of migrations/*/dev_0001,
    /// as `resolve` makes it of the default mapping (tests, SQL text
    /// checks); `bool_as`/`time_tz` say how the database stores them.
    pub fn dev(table: &str, bool_as: Adapter, float_as: Adapter) -> TableMap {
        let mut fields: [Option<Mapped>; 12] = Default::default();
        for (i, c) in Column::ALL.iter().enumerate() {
            let adapter = match kind(*c) {
                Kind::Text => Adapter::Text,
                Kind::Float => float_as,
                Kind::Bool => bool_as,
                Kind::Time => Adapter::TimeTz { digits: 6 },
            };
            fields[i] = Some(Mapped {
                column: c.name().to_string(),
                adapter,
            });
        }
        TableMap {
            table: table.to_string(),
            key: "customer_id".into(),
            fields,
            name: Some("name".into()),
            version: Some("version".into()),
            last_update: Some(Mapped {
                column: "last_update".into(),
                adapter: Adapter::TimeTz { digits: 6 },
            }),
            zone: FixedOffset::east_opt(0).expect("UTC"),
        }
    }

    pub fn field(&self, c: Column) -> Option<&Mapped> {
        self.fields[index(c)].as_ref()
    }

    /// The mapped fields, in [`Column::ALL`] order.
    pub fn mapped(&self) -> impl Iterator<Item = (Column, &Mapped)> {
        Column::ALL
            .into_iter()
            .zip(self.fields.iter())
            .filter_map(|(c, m)| m.as_ref().map(|m| (c, m)))
    }

    /// The key column quoted.
    pub fn key_quoted(&self) -> String {
        quote(&self.key)
    }

    /// `v` as column `c` stores it: a score rounded to the column's scale,
    /// a time cut to the column's precision. The plan writes, logs and
    /// verifies this value, so the re-read compares equal.
    pub fn normalize(&self, c: Column, v: Value) -> Value {
        let Some(m) = self.field(c) else { return v };
        match (m.adapter, v) {
            (Adapter::Decimal { scale }, Value::Float(x)) => Value::Float(round_to(x, scale)),
            (Adapter::TimeText, Value::Time(t)) => Value::Time(t.trunc_subsecs(6)),
            (Adapter::TimeTz { digits } | Adapter::TimeLocal { digits }, Value::Time(t)) => {
                Value::Time(t.trunc_subsecs(digits.min(9) as u16))
            }
            (_, v) => v,
        }
    }

    /// A time as local wall-clock time in the mapping's zone.
    pub fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.zone).naive_local()
    }

    /// Local wall-clock time in the mapping's zone as a UTC time.
    pub fn from_local(&self, t: NaiveDateTime) -> Option<DateTime<Utc>> {
        self.zone
            .from_local_datetime(&t)
            .single()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// `x` rounded to `scale` decimals (half away from zero, as NUMERIC and
/// NUMBER round), as the nearest double: what the column returns.
fn round_to(x: f64, scale: u32) -> f64 {
    if scale > 15 {
        return x;
    }
    let p = 10f64.powi(scale as i32);
    (x * p).round() / p
}

fn index(c: Column) -> usize {
    Column::ALL
        .iter()
        .position(|x| *x == c)
        .expect("every column is in ALL")
}

/// What kind of value a logical field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Float,
    Bool,
    Time,
}

fn kind(c: Column) -> Kind {
    match c {
        Column::GeoLat | Column::GeoLon | Column::QualityScore => Kind::Float,
        Column::ReviewFlag => Kind::Bool,
        Column::LastGovernanceTime => Kind::Time,
        _ => Kind::Text,
    }
}

/// The adapter that writes a `kind` value into a column of type `ty`.
fn adapter(kind: Kind, ty: &SqlType) -> Option<Adapter> {
    Some(match (kind, ty) {
        (Kind::Text, SqlType::Text { .. }) => Adapter::Text,
        (Kind::Float, SqlType::Float) => Adapter::Float,
        (Kind::Float, SqlType::Decimal { scale }) => Adapter::Decimal { scale: *scale },
        (Kind::Float, SqlType::Integer) => Adapter::Decimal { scale: 0 },
        (Kind::Bool, SqlType::Boolean) => Adapter::Bool,
        (Kind::Bool, SqlType::Integer | SqlType::Decimal { scale: 0 }) => Adapter::BoolNumber,
        (Kind::Bool, SqlType::Text { len: Some(1) }) => Adapter::BoolYn,
        (Kind::Time, SqlType::TimestampTz { digits }) => Adapter::TimeTz { digits: *digits },
        (Kind::Time, SqlType::Timestamp { digits }) => Adapter::TimeLocal { digits: *digits },
        (Kind::Time, SqlType::DateTime) => Adapter::TimeLocal { digits: 0 },
        (Kind::Time, SqlType::Text { len: None }) => Adapter::TimeText,
        _ => return None,
    })
}

/// What each kind can be written as, for the error message.
fn accepted(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "a text column (VARCHAR, TEXT, CHAR, CLOB)",
        Kind::Float => {
            "a float or a decimal column (DOUBLE PRECISION, REAL, NUMERIC(p,s), NUMBER(p,s))"
        }
        Kind::Bool => "BOOLEAN, a number column (0/1) or a one-character column ('Y'/'N')",
        Kind::Time => {
            "TIMESTAMP WITH TIME ZONE, TIMESTAMP or DATE (local time in database.mapping.zone), \
             or unbounded text (RFC 3339)"
        }
    }
}

/// The mapping does not fit the table: every problem, each with its fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the target table {table} does not fit database.mapping:\n  - {}", problems.join("\n  - "))]
pub struct TableError {
    pub table: String,
    pub problems: Vec<String>,
}

/// [`resolve`] on what a sink's catalog reader found (`None`: no such
/// table), a misfit as the sink error that stops the processor.
pub fn resolve_found(
    mapping: &TableMapping,
    table: &str,
    found: Option<(String, Catalog)>,
) -> crate::sink::SinkResult<TableMap> {
    let (sql_name, catalog) = match found {
        Some((n, c)) => (n, Some(c)),
        None => (table.to_string(), None),
    };
    resolve(mapping, table, sql_name, catalog.as_ref())
        .map_err(|e| crate::sink::SinkError::Fatal(e.to_string()))
}

/// Resolves `mapping` against the catalog of `table` (`None`: the catalog
/// knows no such table). `table_sql` is how SQL names it.
pub fn resolve(
    mapping: &TableMapping,
    table: &str,
    table_sql: String,
    catalog: Option<&Catalog>,
) -> Result<TableMap, TableError> {
    let fail = |problems: Vec<String>| TableError {
        table: table.to_string(),
        problems,
    };
    let Some(cat) = catalog else {
        return Err(fail(vec![format!(
            "table {table} does not exist (or govsync's user may not see it); check \
             database.target_table and database.schema, or run `govsync migrate --dev-table` \
             for the development table"
        )]));
    };
    let mut problems = Vec::new();
    let mut lookup = |key: &str, name: &str| -> Option<CatalogColumn> {
        let found = cat.find(name).cloned();
        if found.is_none() {
            problems.push(format!(
                "{key} = \"{name}\": {table} has no column {name}; name one of its columns or \
                 set it to \"\" (columns: {})",
                cat.columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        found
    };
    let key = lookup("database.mapping.key", &mapping.key);
    let mut fields: [Option<Mapped>; 12] = Default::default();
    let mut wrong_type = Vec::new();
    for (c, name) in &mapping.columns {
        let key = format!("database.mapping.columns.{c}");
        let Some(col) = lookup(&key, name) else {
            continue;
        };
        match adapter(kind(*c), &col.ty) {
            Some(adapter) => {
                fields[index(*c)] = Some(Mapped {
                    column: col.name,
                    adapter,
                })
            }
            None => wrong_type.push(format!(
                "{key} = \"{name}\": column {} is {}, and no adapter writes {c} into it; {c} \
                 needs {}",
                col.name,
                col.ty,
                accepted(kind(*c))
            )),
        }
    }
    let name = mapping
        .name
        .as_ref()
        .and_then(|n| lookup("database.mapping.name", n))
        .and_then(|col| {
            if matches!(col.ty, SqlType::Text { .. }) {
                Some(col.name)
            } else {
                wrong_type.push(format!(
                    "database.mapping.name = \"{}\": column {} is {}, not text",
                    col.name, col.name, col.ty
                ));
                None
            }
        });
    let version = mapping
        .version
        .as_ref()
        .and_then(|n| lookup("database.mapping.version", n))
        .and_then(|col| {
            if matches!(col.ty, SqlType::Integer | SqlType::Decimal { scale: 0 }) {
                Some(col.name)
            } else {
                wrong_type.push(format!(
                    "database.mapping.version = \"{}\": column {} is {}, not an integer; name an \
                     integer column or set it to \"\" (govsync then counts writes in its own table)",
                    col.name, col.name, col.ty
                ));
                None
            }
        });
    let last_update = mapping
        .last_update
        .as_ref()
        .and_then(|n| lookup("database.mapping.last_update", n))
        .and_then(|col| match adapter(Kind::Time, &col.ty) {
            Some(adapter) => Some(Mapped {
                column: col.name,
                adapter,
            }),
            None => {
                wrong_type.push(format!(
                    "database.mapping.last_update = \"{}\": column {} is {}; conflict detection \
                     reads {}",
                    col.name,
                    col.name,
                    col.ty,
                    accepted(Kind::Time)
                ));
                None
            }
        });
    problems.extend(wrong_type);
    if let Some(k) = &key {
        if !matches!(k.ty, SqlType::Text { .. }) {
            problems.push(format!(
                "database.mapping.key = \"{}\": column {} is {}; govsync's keys (customer_id) are \
                 text, name a text column",
                mapping.key, k.name, k.ty
            ));
        }
        if !cat.unique.contains(&k.name) {
            problems.push(format!(
                "database.mapping.key = \"{}\": column {} has no primary key or unique index of \
                 its own, so one customer could be several rows; add one (govsync never alters \
                 the table) or name the column that has one",
                mapping.key, k.name
            ));
        }
    }
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    Ok(TableMap {
        table: table_sql,
        key: key.map(|k| k.name).unwrap_or_default(),
        fields,
        name,
        version,
        last_update,
        zone: mapping.zone,
    })
}

/// The CUST_BASE mapping of the README as an operator writes it
/// (unquoted lower-case names), for the unit tests here and the Oracle
/// sink's.
#[cfg(test)]
pub(crate) fn cust_base_mapping() -> TableMapping {
    let mut m = TableMapping {
        key: "cust_no".into(),
        name: None,
        version: None,
        last_update: Some("upd_ts".into()),
        zone: FixedOffset::east_opt(8 * 3600).expect("+08:00"),
        columns: Default::default(),
    };
    for (c, n) in [
        (Column::Address, "addr_line"),
        (Column::Phone, "mobile_no"),
        (Column::IdCard, "id_no"),
        (Column::QualityScore, "data_qlty"),
        (Column::ValidationStatus, "chk_status"),
        (Column::ReviewFlag, "review_ind"),
    ] {
        m.columns.insert(c, n.into());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TableMapping;

    fn col(name: &str, ty: SqlType) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            ty,
        }
    }

    /// CRM.CUST_BASE of the README, as Oracle's catalog describes it.
    fn cust_base() -> Catalog {
        Catalog {
            columns: vec![
                col("CUST_NO", SqlType::Text { len: Some(20) }),
                col("ADDR_LINE", SqlType::Text { len: Some(200) }),
                col("MOBILE_NO", SqlType::Text { len: Some(20) }),
                col("ID_NO", SqlType::Text { len: Some(18) }),
                col("DATA_QLTY", SqlType::Decimal { scale: 2 }),
                col("CHK_STATUS", SqlType::Text { len: Some(32) }),
                col("REVIEW_IND", SqlType::Text { len: Some(1) }),
                col("UPD_TS", SqlType::DateTime),
                col("OPENED", SqlType::DateTime),
            ],
            unique: vec!["CUST_NO".into()],
        }
    }

    #[test]
    fn a_bank_table_resolves_with_its_own_names_and_encodings() {
        let map = resolve(
            &cust_base_mapping(),
            "CRM.CUST_BASE",
            "\"CRM\".\"CUST_BASE\"".into(),
            Some(&cust_base()),
        )
        .unwrap();
        assert_eq!(map.key, "CUST_NO");
        assert_eq!(map.version, None);
        let f = |c| map.field(c).cloned();
        assert_eq!(
            f(Column::QualityScore),
            Some(Mapped {
                column: "DATA_QLTY".into(),
                adapter: Adapter::Decimal { scale: 2 }
            })
        );
        assert_eq!(f(Column::ReviewFlag).unwrap().adapter, Adapter::BoolYn);
        assert_eq!(f(Column::GeoLat), None);
        assert_eq!(
            map.last_update.as_ref().unwrap().adapter,
            Adapter::TimeLocal { digits: 0 }
        );
        assert_eq!(
            map.field(Column::Address).unwrap().quoted(),
            "\"ADDR_LINE\""
        );
        // Values as the columns keep them.
        assert_eq!(
            map.normalize(Column::QualityScore, Value::Float(0.925_1)),
            Value::Float(0.93)
        );
        let t: DateTime<Utc> = "2024-01-15T02:20:00.123456Z".parse().unwrap();
        assert_eq!(
            map.normalize(Column::LastGovernanceTime, Value::Time(t)),
            Value::Time(t),
            "an unmapped field is left alone"
        );
        assert_eq!(
            map.to_local(t).to_string(),
            "2024-01-15 10:20:00.123456",
            "local time at +08:00"
        );
        assert_eq!(map.from_local(map.to_local(t)), Some(t));
    }

    #[test]
    fn every_problem_is_reported_with_the_column_and_the_fix() {
        let mut m = cust_base_mapping();
        m.columns.insert(Column::Address, "addr".into()); // missing
        m.columns.insert(Column::ReviewFlag, "opened".into()); // a DATE
        let mut cat = cust_base();
        cat.unique.clear();
        let e = resolve(&m, "CRM.CUST_BASE", "x".into(), Some(&cat)).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.problems.len(), 3, "{text}");
        assert!(
            text.contains(
                "database.mapping.columns.address = \"addr\": CRM.CUST_BASE has no column addr"
            ),
            "{text}"
        );
        assert!(
            text.contains("column OPENED is date, and no adapter writes review_flag into it"),
            "{text}"
        );
        assert!(text.contains("no primary key or unique index"), "{text}");
        assert!(text.contains("CUST_NO"), "{text}");
        let none = resolve(&m, "CRM.CUST_BASE", "x".into(), None).unwrap_err();
        assert!(none.to_string().contains("does not exist"), "{none}");
    }

    #[test]
    fn a_numeric_key_and_a_text_version_are_refused() {
        let mut cat = cust_base();
        cat.columns[0].ty = SqlType::Decimal { scale: 0 };
        cat.columns.push(col("VER", SqlType::Text { len: None }));
        let mut m = cust_base_mapping();
        m.version = Some("VER".into());
        let e = resolve(&m, "T", "x".into(), Some(&cat)).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(
            e.problems
                .iter()
                .any(|p| p.contains("keys (customer_id) are text"))
        );
        assert!(e.problems.iter().any(|p| p.contains("not an integer")));
    }

    #[test]
    fn names_match_the_catalog_regardless_of_case_unless_ambiguous() {
        let cat = Catalog {
            columns: vec![col("Addr", SqlType::Float), col("ADDR", SqlType::Float)],
            unique: vec![],
        };
        assert_eq!(cat.find("Addr").unwrap().name, "Addr");
        assert!(
            cat.find("addr").is_none(),
            "two columns differ only in case"
        );
        assert_eq!(cust_base().find("upd_ts").unwrap().name, "UPD_TS");
    }

    #[test]
    fn the_dev_mapping_resolves_to_the_dev_table() {
        let cat = Catalog {
            columns: Column::ALL
                .iter()
                .map(|c| {
                    col(
                        c.name(),
                        match kind(*c) {
                            Kind::Text => SqlType::Text { len: None },
                            Kind::Float => SqlType::Float,
                            Kind::Bool => SqlType::Boolean,
                            Kind::Time => SqlType::TimestampTz { digits: 6 },
                        },
                    )
                })
                .chain([
                    col("customer_id", SqlType::Text { len: Some(64) }),
                    col("name", SqlType::Text { len: Some(100) }),
                    col("last_update", SqlType::TimestampTz { digits: 6 }),
                    col("version", SqlType::Integer),
                ])
                .collect(),
            unique: vec!["customer_id".into()],
        };
        let map = resolve(
            &TableMapping::default(),
            "customer_profile",
            "\"customer_profile\"".into(),
            Some(&cat),
        )
        .unwrap();
        assert_eq!(
            map,
            TableMap::dev("\"customer_profile\"", Adapter::Bool, Adapter::Float)
        );
    }

    #[test]
    fn decimals_round_half_away_from_zero_to_the_nearest_double() {
        assert_eq!(round_to(0.125, 2), 0.13);
        assert_eq!(round_to(0.92, 2), 0.92);
        assert_eq!(round_to(-1.5, 0), -2.0);
        assert_eq!(round_to(0.1234567, 20), 0.1234567);
    }
}
