//! What govsync does when a row changed after the engine read it: chosen per
//! data type in the config (`[conflict]`), applied by the batch plan.

/// What to do when the row changed after the engine read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// Write nothing; send to review.
    #[default]
    Review,
    /// Write the governed values anyway.
    Overwrite,
    /// Keep a concurrent value that extends the governed one (…123号A座 over
    /// …123号), keep columns the engine did not see change, apply the rest;
    /// review when the concurrent change cannot be reconciled.
    Merge,
}
