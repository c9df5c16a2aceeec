//! The target table's columns that govsync may write, and row images.
//!
//! Column names reach SQL only through [`Column::name`]: an event selects
//! columns from this closed set, it never supplies identifiers.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::DataType;

/// A column of `customer_profile` that governance may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Address,
    GeoLat,
    GeoLon,
    GeoAccuracy,
    IdCard,
    Phone,
    CarrierInfo,
    QualityScore,
    ValidationStatus,
    ReviewFlag,
    ReviewPriority,
    LastGovernanceTime,
}

impl Column {
    pub const ALL: [Column; 12] = [
        Column::Address,
        Column::GeoLat,
        Column::GeoLon,
        Column::GeoAccuracy,
        Column::IdCard,
        Column::Phone,
        Column::CarrierInfo,
        Column::QualityScore,
        Column::ValidationStatus,
        Column::ReviewFlag,
        Column::ReviewPriority,
        Column::LastGovernanceTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::Address => "address",
            Column::GeoLat => "geo_lat",
            Column::GeoLon => "geo_lon",
            Column::GeoAccuracy => "geo_accuracy",
            Column::IdCard => "id_card",
            Column::Phone => "phone",
            Column::CarrierInfo => "carrier_info",
            Column::QualityScore => "quality_score",
            Column::ValidationStatus => "validation_status",
            Column::ReviewFlag => "review_flag",
            Column::ReviewPriority => "review_priority",
            Column::LastGovernanceTime => "last_governance_time",
        }
    }

    pub fn parse(s: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Columns that describe a value rather than hold it: a flagged record
    /// writes only these, never a data value.
    pub fn is_metadata(self) -> bool {
        matches!(
            self,
            Column::QualityScore
                | Column::ValidationStatus
                | Column::ReviewFlag
                | Column::ReviewPriority
                | Column::LastGovernanceTime
        )
    }

    /// The built-in allow-list of DESIGN.md section 3 (config may narrow or
    /// widen it).
    pub fn default_allow_list(dt: DataType) -> &'static [Column] {
        match dt {
            DataType::Address => &[
                Column::Address,
                Column::GeoLat,
                Column::GeoLon,
                Column::GeoAccuracy,
                Column::QualityScore,
                Column::ValidationStatus,
                Column::LastGovernanceTime,
            ],
            DataType::IdCard => &[
                Column::IdCard,
                Column::QualityScore,
                Column::ValidationStatus,
                Column::ReviewFlag,
                Column::ReviewPriority,
                Column::LastGovernanceTime,
            ],
            DataType::Phone => &[
                Column::Phone,
                Column::CarrierInfo,
                Column::QualityScore,
                Column::ValidationStatus,
                Column::LastGovernanceTime,
            ],
        }
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A column value. Times are UTC with microsecond precision (what every
/// supported database stores exactly), so re-read values compare equal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Text(String),
    Float(f64),
    Bool(bool),
    Time(DateTime<Utc>),
}

impl Value {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// The columns of one `customer_profile` row that govsync reads and writes.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Row {
    pub address: Option<String>,
    pub geo_lat: Option<f64>,
    pub geo_lon: Option<f64>,
    pub geo_accuracy: Option<String>,
    pub id_card: Option<String>,
    pub phone: Option<String>,
    pub carrier_info: Option<String>,
    pub quality_score: Option<f64>,
    pub validation_status: Option<String>,
    pub review_flag: Option<bool>,
    pub review_priority: Option<String>,
    pub last_governance_time: Option<DateTime<Utc>>,
    /// Owned by the business side; govsync only reads it (conflict detection).
    pub last_update: Option<DateTime<Utc>>,
    /// Counts govsync's writes to the row.
    pub version: i64,
}

fn text(v: &Option<String>) -> Value {
    v.clone().map_or(Value::Null, Value::Text)
}
fn float(v: Option<f64>) -> Value {
    v.map_or(Value::Null, Value::Float)
}

impl Row {
    pub fn get(&self, c: Column) -> Value {
        match c {
            Column::Address => text(&self.address),
            Column::GeoLat => float(self.geo_lat),
            Column::GeoLon => float(self.geo_lon),
            Column::GeoAccuracy => text(&self.geo_accuracy),
            Column::IdCard => text(&self.id_card),
            Column::Phone => text(&self.phone),
            Column::CarrierInfo => text(&self.carrier_info),
            Column::QualityScore => float(self.quality_score),
            Column::ValidationStatus => text(&self.validation_status),
            Column::ReviewFlag => self.review_flag.map_or(Value::Null, Value::Bool),
            Column::ReviewPriority => text(&self.review_priority),
            Column::LastGovernanceTime => {
                self.last_governance_time.map_or(Value::Null, Value::Time)
            }
        }
    }

    /// Sets a column. A value of the wrong kind for the column is a bug in
    /// the caller (values come from [`super::rules`]), so it panics in debug
    /// builds and is ignored in release builds.
    pub fn set(&mut self, c: Column, v: &Value) {
        fn t(v: &Value) -> Option<String> {
            match v {
                Value::Text(s) => Some(s.clone()),
                _ => None,
            }
        }
        fn f(v: &Value) -> Option<f64> {
            match v {
                Value::Float(x) => Some(*x),
                _ => None,
            }
        }
        debug_assert!(
            matches!(
                (c, v),
                (_, Value::Null)
                    | (
                        Column::GeoLat | Column::GeoLon | Column::QualityScore,
                        Value::Float(_)
                    )
                    | (Column::ReviewFlag, Value::Bool(_))
                    | (Column::LastGovernanceTime, Value::Time(_))
                    | (
                        Column::Address
                            | Column::GeoAccuracy
                            | Column::IdCard
                            | Column::Phone
                            | Column::CarrierInfo
                            | Column::ValidationStatus
                            | Column::ReviewPriority,
                        Value::Text(_)
                    )
            ),
            "value {v:?} does not fit column {c}"
        );
        match c {
            Column::Address => self.address = t(v),
            Column::GeoLat => self.geo_lat = f(v),
            Column::GeoLon => self.geo_lon = f(v),
            Column::GeoAccuracy => self.geo_accuracy = t(v),
            Column::IdCard => self.id_card = t(v),
            Column::Phone => self.phone = t(v),
            Column::CarrierInfo => self.carrier_info = t(v),
            Column::QualityScore => self.quality_score = f(v),
            Column::ValidationStatus => self.validation_status = t(v),
            Column::ReviewFlag => {
                self.review_flag = match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                }
            }
            Column::ReviewPriority => self.review_priority = t(v),
            Column::LastGovernanceTime => {
                self.last_governance_time = match v {
                    Value::Time(x) => Some(*x),
                    _ => None,
                }
            }
        }
    }

    /// The same object as [`Row::image`], serialised straight to text
    /// (change-log images: no `serde_json::Value` tree per record).
    pub fn image_json(&self, cols: &[Column]) -> String {
        use serde::ser::{SerializeMap, Serializer};
        let mut buf = Vec::with_capacity(32 * cols.len() + 2);
        let mut ser = serde_json::Serializer::new(&mut buf);
        let written = (|| {
            let mut map = ser.serialize_map(Some(cols.len()))?;
            for &c in cols {
                map.serialize_entry(c.name(), &self.get(c))?;
            }
            map.end()
        })();
        match written {
            Ok(()) => String::from_utf8(buf).unwrap_or_default(),
            Err(_) => self.image(cols).to_string(),
        }
    }

    /// A JSON object of the given columns' values (change-log images).
    pub fn image(&self, cols: &[Column]) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for &c in cols {
            m.insert(
                c.name().to_string(),
                serde_json::to_value(self.get(c)).unwrap_or_default(),
            );
        }
        serde_json::Value::Object(m)
    }
}

/// Parses a change-log image value back into a column value.
pub fn value_from_json(c: Column, v: &serde_json::Value) -> Option<Value> {
    Some(match (c, v) {
        (_, serde_json::Value::Null) => Value::Null,
        (Column::GeoLat | Column::GeoLon | Column::QualityScore, serde_json::Value::Number(n)) => {
            Value::Float(n.as_f64()?)
        }
        (Column::ReviewFlag, serde_json::Value::Bool(b)) => Value::Bool(*b),
        (Column::LastGovernanceTime, serde_json::Value::String(s)) => {
            Value::Time(DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc))
        }
        (_, serde_json::Value::String(s)) => Value::Text(s.clone()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_round_trips_through_json() {
        let mut row = Row::default();
        let t = DateTime::parse_from_rfc3339("2024-01-15T02:20:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        row.set(
            Column::Address,
            &Value::Text("江苏省南京市玄武区中山路123号".into()),
        );
        row.set(Column::QualityScore, &Value::Float(0.92));
        row.set(Column::ReviewFlag, &Value::Bool(true));
        row.set(Column::LastGovernanceTime, &Value::Time(t));
        let img = row.image(&Column::ALL);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&row.image_json(&Column::ALL)).unwrap(),
            img
        );
        for c in Column::ALL {
            let back = value_from_json(c, &img[c.name()]).unwrap();
            assert_eq!(back, row.get(c), "{c}");
        }
    }

    #[test]
    fn column_names_parse_back() {
        for c in Column::ALL {
            assert_eq!(Column::parse(c.name()), Some(c));
        }
        assert_eq!(Column::parse("name; drop table x"), None);
    }
}
