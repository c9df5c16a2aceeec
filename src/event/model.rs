//! The v1 wire contract as serde types.
//!
//! These types mirror `schemas/governance-event.v1.schema.json` field for
//! field. The envelope and `sync_operation` are closed (an unknown key is an
//! error: it is most likely a typo in the governance engine); the data
//! objects (`original_data`, `governance_result` and their sub-objects) are
//! open, because the engine adds diagnostics over time. Known keys are typed:
//! a known key with the wrong type, or `null`, is rejected, exactly as the
//! schema rejects it. serde is more lenient than JSON Schema in two places,
//! closed here: a struct only comes from a JSON object (`object`; serde
//! would take an array, field by position) and an enum only from a string
//! (`name`; serde_json would take `{"high": null}`). String lengths,
//! patterns and numeric ranges are checked after deserialisation by
//! [`super::decode`].

use serde::{Deserialize, Deserializer, Serialize};

/// Which kind of governance produced the event; selects the column allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    Address,
    IdCard,
    Phone,
}

impl DataType {
    pub const ALL: [DataType; 3] = [DataType::Address, DataType::IdCard, DataType::Phone];

    /// Its position in [`DataType::ALL`].
    pub fn index(self) -> usize {
        match self {
            DataType::Address => 0,
            DataType::IdCard => 1,
            DataType::Phone => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Address => "address",
            DataType::IdCard => "id_card",
            DataType::Phone => "phone",
        }
    }

    pub fn parse(s: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationType {
    Update,
    Insert,
    FlagForReview,
}

impl OperationType {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationType::Update => "update",
            OperationType::Insert => "insert",
            OperationType::FlagForReview => "flag_for_review",
        }
    }
}

/// Scheduling priority of the event (the seed's `priority: high`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    #[default]
    Standard,
    Low,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewPriority {
    High,
    Medium,
    Low,
}

impl ReviewPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewPriority::High => "high",
            ReviewPriority::Medium => "medium",
            ReviewPriority::Low => "low",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    Passed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatValidation {
    Valid,
    Invalid,
}

/// `schema_version`: JSON Schema's `const: 1` accepts `1` and `1.0`, so do we.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchemaVersion(pub f64);

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        n.as_f64()
            .map(SchemaVersion)
            .ok_or_else(|| serde::de::Error::custom("schema_version is not a number"))
    }
}

/// A JSON integer as JSON Schema defines it: `34` and `34.0` are both integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonInt(pub i64);

impl<'de> Deserialize<'de> for JsonInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        if let Some(i) = n.as_i64() {
            return Ok(JsonInt(i));
        }
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(JsonInt(f as i64)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid type: {n}, expected an integer"
            ))),
        }
    }
}

/// Deserialises an optional key that, when present, must not be `null`
/// (JSON Schema's typed properties reject `null`; serde's `Option` would
/// silently accept it).
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Deserialises a struct from a JSON object only. serde's derived struct
/// impls also accept a JSON array (fields by position), which the schema
/// rejects: `"sync_operation": ["update", ["address"]]` must not decode.
pub(crate) fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(ObjectOnly(d))
}

/// [`object`] for an optional key that, when present, must not be `null`.
pub(crate) fn present_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    object(d).map(Some)
}

/// Routes every request to `deserialize_map`, which serde_json serves only
/// from a `{...}` object.
pub(crate) struct ObjectOnly<D>(pub D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(v)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// Deserialises a unit-variant enum from a JSON string only. serde_json also
/// accepts the externally tagged form `{"high": null}`, which the schema's
/// `enum` of strings rejects.
pub(crate) fn name<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::IntoDeserializer;
    let s = String::deserialize(d)?;
    T::deserialize(s.as_str().into_deserializer())
        .map_err(|e: serde::de::value::Error| serde::de::Error::custom(e))
}

/// [`name`] for an optional key that, when present, must not be `null`.
pub(crate) fn present_name<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    name(d).map(Some)
}

/// One governance result for one customer record (wire contract v1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub schema_version: SchemaVersion,
    /// Unique id of this result; the dedupe key.
    pub event_id: String,
    /// The governance engine's batch (e.g. `ADDR_SYNC_20240115_001`).
    #[serde(default, deserialize_with = "present")]
    pub batch_id: Option<String>,
    /// Region (the Kafka key), e.g. `3201`.
    pub region_code: String,
    /// County, e.g. `320102`.
    #[serde(default, deserialize_with = "present")]
    pub county_code: Option<String>,
    #[serde(deserialize_with = "name")]
    pub data_type: DataType,
    #[serde(default, deserialize_with = "present_name")]
    pub priority: Option<Priority>,
    /// RFC 3339 time at which the engine produced this result.
    pub governed_at: String,
    pub customer_id: String,
    #[serde(deserialize_with = "object")]
    pub original_data: OriginalData,
    #[serde(deserialize_with = "object")]
    pub governance_result: GovernanceResult,
    #[serde(deserialize_with = "object")]
    pub sync_operation: SyncOperation,
}

/// The record as the governance engine read it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OriginalData {
    #[serde(default, deserialize_with = "present")]
    pub address: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub id_card: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    /// The row's `last_update` as the engine saw it: conflict detection
    /// compares the row against this.
    #[serde(default, deserialize_with = "present")]
    pub last_update: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub data_source: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub quality_score: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Geocoding {
    #[serde(default, deserialize_with = "present")]
    pub latitude: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    pub longitude: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    pub accuracy: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RegionValidation {
    #[serde(default, deserialize_with = "present")]
    pub region_code: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub region_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BirthDateAnalysis {
    #[serde(default, deserialize_with = "present")]
    pub extracted_date: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub age: Option<JsonInt>,
    #[serde(default, deserialize_with = "present")]
    pub reasonableness: Option<String>,
}

/// What the governance engine concluded. Which keys matter depends on the
/// data type; unknown keys are kept out of the way (not written anywhere).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GovernanceResult {
    #[serde(default, deserialize_with = "present")]
    pub standardized_address: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub confidence_score: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    pub validation_status: Option<String>,
    #[serde(default, deserialize_with = "present_object")]
    pub geocoding_result: Option<Geocoding>,
    #[serde(default, deserialize_with = "present")]
    pub reference_source: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub quality_improvements: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present_name")]
    pub format_check: Option<CheckResult>,
    #[serde(default, deserialize_with = "present_name")]
    pub checksum_validation: Option<CheckResult>,
    #[serde(default, deserialize_with = "present_object")]
    pub region_validation: Option<RegionValidation>,
    #[serde(default, deserialize_with = "present_object")]
    pub birth_date_analysis: Option<BirthDateAnalysis>,
    #[serde(default, deserialize_with = "present")]
    pub issues: Option<Vec<String>>,
    /// Never written automatically: a suggested correction goes to review.
    #[serde(default, deserialize_with = "present")]
    pub suggested_correction: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub quality_score: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    pub confidence: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    pub risk_level: Option<String>,
    #[serde(default, deserialize_with = "present_name")]
    pub format_validation: Option<FormatValidation>,
    /// Written verbatim (as JSON text) to `carrier_info`.
    #[serde(default, deserialize_with = "present")]
    pub carrier_info: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, deserialize_with = "present")]
    pub activity_status: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, deserialize_with = "present")]
    pub risk_indicators: Option<Vec<String>>,
}

/// What govsync is asked to do with the result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncOperation {
    #[serde(deserialize_with = "name")]
    pub operation_type: OperationType,
    /// Columns to write; each must be in the data type's allow-list.
    pub target_fields: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    pub backup_required: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub validation_rules: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub requires_manual_review: Option<bool>,
    #[serde(default, deserialize_with = "present_name")]
    pub review_priority: Option<ReviewPriority>,
}
