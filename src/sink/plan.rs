//! The pure core of a batch: given the records (in offset order) and the
//! state read under lock, decide each record's outcome and the final image
//! of every row. No I/O, so it is shared by every database and unit-tested
//! in isolation.
//!
//! Records are applied in offset order against the row *as the previous
//! record left it*; the writes are then collapsed to one final image per
//! customer, so the set-based SQL never touches a key twice (no "ON CONFLICT
//! cannot affect row a second time", no ORA-30926).

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use chrono::{DateTime, Utc};

use super::RowState;

use crate::event::{
    Checked, Column, ConflictPolicy, DataType, Disposition, OperationType, Row, Value,
};

/// The outcome of one record (DESIGN.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    Flagged,
    /// Held for review: govsync's own check contradicts the engine.
    Review,
    Conflict,
    Stale,
    Duplicate,
    Invalid,
    /// The database rejected this record.
    Poison,
    /// Already applied by another instance (below the watermark).
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Applied,
        Outcome::Flagged,
        Outcome::Review,
        Outcome::Conflict,
        Outcome::Stale,
        Outcome::Duplicate,
        Outcome::Invalid,
        Outcome::Poison,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Flagged => "flagged",
            Outcome::Review => "review",
            Outcome::Conflict => "conflict",
            Outcome::Stale => "stale",
            Outcome::Duplicate => "duplicate",
            Outcome::Invalid => "invalid",
            Outcome::Poison => "poison",
            Outcome::Skipped => "skipped",
        }
    }

    /// Outcomes recorded in the change log (everything govsync decided on
    /// itself; duplicates are not logged twice).
    pub fn is_logged(self) -> bool {
        matches!(
            self,
            Outcome::Applied
                | Outcome::Flagged
                | Outcome::Review
                | Outcome::Conflict
                | Outcome::Stale
        )
    }

    /// Outcomes that wrote to the row.
    pub fn wrote(self) -> bool {
        matches!(self, Outcome::Applied | Outcome::Flagged)
    }
}

/// State read inside the transaction, under lock. (The maps hash with
/// foldhash: a batch looks every key up several times, and the keys come
/// from the governance engine, not from strangers.)
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub rows: HashMap<String, Row>,
    /// Event ids already in the change log.
    pub seen: HashSet<String>,
    /// Latest governed_at of a written result per customer, by
    /// [`DataType::index`].
    pub governed: HashMap<String, [Option<DateTime<Utc>>; 3]>,
}

impl Snapshot {
    pub fn new(
        rows: impl IntoIterator<Item = (String, Row)>,
        seen: impl IntoIterator<Item = String>,
        states: Vec<RowState>,
    ) -> Self {
        Snapshot {
            rows: rows.into_iter().collect(),
            seen: seen.into_iter().collect(),
            governed: states
                .into_iter()
                .map(|s| (s.customer_id, s.governed_at))
                .collect(),
        }
    }

    /// When the last written result of `dt` for `customer` was governed.
    pub fn last_governed(&self, customer: &str, dt: DataType) -> Option<DateTime<Utc>> {
        self.governed.get(customer).and_then(|g| g[dt.index()])
    }

    pub fn set_last_governed(&mut self, customer: &str, dt: DataType, at: DateTime<Utc>) {
        self.governed.entry(customer.to_string()).or_default()[dt.index()] = Some(at);
    }
}

/// The decision for one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// How it was written: update, insert, merge, overwrite (for the log).
    pub operation: &'static str,
    pub details: Vec<String>,
    /// The row before this record, for conflicts (what the reviewer sees).
    /// Boxed, like `raised`: most decisions have none.
    pub current: Option<Box<Row>>,
    /// For a record that raises a review item (review, conflict, flagged):
    /// the row as it was when the record was decided (`None`: no row).
    /// Boxed: a batch holds a decision per record, few of them raise one.
    pub raised: Option<Box<Row>>,
    /// Images of the written columns.
    /// JSON text: built once, written as is (a serde_json::Value tree per
    /// record costs kilobytes in a 5000-record batch).
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Decision {
    fn bare(outcome: Outcome, operation: &'static str, details: Vec<String>) -> Self {
        Decision {
            outcome,
            operation,
            details,
            current: None,
            raised: None,
            before: None,
            after: None,
        }
    }
}

/// One row to write: its final image and how many records wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowWrite {
    pub customer_id: String,
    pub name: Option<String>,
    pub row: Row,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// One per input record (`None` for records the caller excluded).
    pub decisions: Vec<Option<Decision>>,
    /// Existing rows to update, ordered by customer id.
    pub updates: Vec<RowWrite>,
    /// New rows to insert, ordered by customer id.
    pub inserts: Vec<RowWrite>,
    /// The new state of every row a result was written to (staleness of
    /// later batches), ordered by customer id.
    pub state: Vec<RowState>,
}

impl Plan {
    pub fn is_empty_write(&self) -> bool {
        self.updates.is_empty()
            && self.inserts.is_empty()
            && !self
                .decisions
                .iter()
                .flatten()
                .any(|d| d.outcome.is_logged())
    }
}

/// Plans a batch. `include[i] == false` excludes record `i` (a poison
/// record found earlier); its decision is `None`.
///
/// `normalize` turns a governed value into what its column stores (a score
/// rounded to a NUMBER's scale, a time cut to a DATE's second:
/// [`super::table::TableMap::normalize`]), so the plan's images, the
/// merge policy's comparisons and the verification see the stored value.
pub fn plan(
    records: &[&Checked],
    include: &[bool],
    snap: &Snapshot,
    policy: impl Fn(DataType) -> ConflictPolicy,
    normalize: impl Fn(Column, Value) -> Value,
) -> Plan {
    let mut rows: HashMap<&str, Row> = HashMap::new();
    let mut is_new: HashSet<&str> = HashSet::new();
    let mut dirty: BTreeMap<&str, Option<String>> = BTreeMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut last_gov: HashMap<(&str, DataType), DateTime<Utc>> = HashMap::new();
    let mut decisions = Vec::with_capacity(records.len());

    for (i, c) in records.iter().enumerate() {
        if !include.get(i).copied().unwrap_or(true) {
            decisions.push(None);
            continue;
        }
        let cust = c.customer_id.as_str();
        if snap.seen.contains(&c.event_id) || !seen.insert(c.event_id.as_str()) {
            decisions.push(Some(Decision::bare(Outcome::Duplicate, "none", vec![])));
            continue;
        }
        if let Disposition::Hold(reasons) = &c.disposition {
            decisions.push(Some(Decision {
                raised: rows
                    .get(cust)
                    .or_else(|| snap.rows.get(cust))
                    .cloned()
                    .map(Box::new),
                ..Decision::bare(Outcome::Review, "hold", reasons.clone())
            }));
            continue;
        }
        let last = last_gov
            .get(&(cust, c.data_type))
            .copied()
            .or_else(|| snap.last_governed(cust, c.data_type));
        if let Some(last) = last
            && c.governed_at < last
        {
            decisions.push(Some(Decision::bare(
                Outcome::Stale,
                "none",
                vec![format!(
                    "a newer {} result (governed at {}) was already applied",
                    c.data_type,
                    crate::output::rfc3339(last)
                )],
            )));
            continue;
        }
        if !rows.contains_key(cust)
            && let Some(r) = snap.rows.get(cust)
        {
            rows.insert(cust, r.clone());
        }
        let exists = rows.contains_key(cust);
        let mut operation = match c.operation {
            OperationType::Insert => "insert",
            OperationType::Update => "update",
            OperationType::FlagForReview => "flag",
        };
        if c.operation == OperationType::Insert && exists {
            decisions.push(Some(Decision {
                current: rows.get(cust).cloned().map(Box::new),
                raised: rows.get(cust).cloned().map(Box::new),
                ..Decision::bare(
                    Outcome::Conflict,
                    "none",
                    vec!["insert of a customer that already exists".into()],
                )
            }));
            continue;
        }
        if c.operation != OperationType::Insert && !exists {
            decisions.push(Some(Decision::bare(
                Outcome::Invalid,
                "none",
                vec![format!(
                    "customer {cust} does not exist in the target table"
                )],
            )));
            continue;
        }
        if !exists {
            rows.insert(cust, Row::default());
            is_new.insert(cust);
        }
        let row = rows.get_mut(cust).expect("present");

        // Conflict: someone changed the row after the engine read it.
        let mut writes: Vec<(Column, Value)> = c
            .writes
            .iter()
            .map(|(col, v)| (*col, normalize(*col, v.clone())))
            .collect();
        if let (Some(row_t), Some(seen_t)) = (row.last_update, c.seen_last_update)
            && row_t > seen_t
        {
            let why = format!(
                "the row was updated at {} after the engine read it ({})",
                crate::output::rfc3339(row_t),
                crate::output::rfc3339(seen_t)
            );
            match policy(c.data_type) {
                ConflictPolicy::Review => {
                    decisions.push(Some(Decision {
                        current: Some(Box::new(row.clone())),
                        raised: Some(Box::new(row.clone())),
                        ..Decision::bare(Outcome::Conflict, "none", vec![why])
                    }));
                    continue;
                }
                ConflictPolicy::Overwrite => operation = "overwrite",
                ConflictPolicy::Merge => match merge(row, c, &writes) {
                    Ok(merged) => {
                        writes = merged;
                        operation = "merge";
                    }
                    Err(reason) => {
                        decisions.push(Some(Decision {
                            current: Some(Box::new(row.clone())),
                            raised: Some(Box::new(row.clone())),
                            ..Decision::bare(Outcome::Conflict, "none", vec![why, reason])
                        }));
                        continue;
                    }
                },
            }
        }

        let cols: Vec<Column> = writes.iter().map(|(c, _)| *c).collect();
        let raised = matches!(c.disposition, Disposition::Flag(_)).then(|| Box::new(row.clone()));
        let before = row.image_json(&cols);
        for (col, v) in &writes {
            row.set(*col, v);
        }
        row.version += 1;
        let after = row.image_json(&cols);
        let outcome = match c.disposition {
            Disposition::Flag(_) => Outcome::Flagged,
            _ => Outcome::Applied,
        };
        let details = match &c.disposition {
            Disposition::Flag(r) => r.clone(),
            _ => vec![],
        };
        dirty.entry(cust).or_insert_with(|| c.name.clone());
        last_gov.insert((cust, c.data_type), c.governed_at);
        decisions.push(Some(Decision {
            outcome,
            operation,
            details,
            current: None,
            raised,
            before: Some(before),
            after: Some(after),
        }));
    }

    let mut plan = Plan {
        decisions,
        ..Default::default()
    };
    for cust in dirty.keys() {
        let mut st = RowState {
            customer_id: cust.to_string(),
            governed_at: [None; 3],
            version: Some(rows[cust].version),
        };
        for dt in DataType::ALL {
            st.governed_at[dt.index()] = last_gov
                .get(&(*cust, dt))
                .copied()
                .or_else(|| snap.last_governed(cust, dt));
        }
        plan.state.push(st);
    }
    for (cust, name) in dirty {
        let w = RowWrite {
            customer_id: cust.to_string(),
            name,
            row: rows.remove(cust).expect("a dirty row is planned"),
        };
        if is_new.contains(cust) {
            plan.inserts.push(w);
        } else {
            plan.updates.push(w);
        }
    }
    plan
}

/// The merge policy: per data column, write the governed value when the row
/// still holds what the engine saw (or already holds the governed value);
/// keep the row's value when it extends the governed one; otherwise give up.
/// Metadata columns are always written.
fn merge(
    row: &Row,
    c: &Checked,
    writes: &[(Column, Value)],
) -> Result<Vec<(Column, Value)>, String> {
    let mut out = Vec::with_capacity(writes.len());
    for (col, governed) in writes {
        if col.is_metadata() {
            out.push((*col, governed.clone()));
            continue;
        }
        let current = row.get(*col);
        let seen = c
            .seen_values
            .iter()
            .find(|(sc, _)| sc == col)
            .map(|(_, v)| v);
        if current == *governed || Some(&current) == seen || current == Value::Null {
            out.push((*col, governed.clone()));
        } else if let (Value::Text(cur), Value::Text(gov)) = (&current, governed)
            && cur.len() > gov.len()
            && cur.starts_with(gov.as_str())
        {
            // The concurrent value is the governed one plus detail: keep it.
        } else {
            return Err(format!(
                "merge: {col} was changed concurrently to a value that does not extend the governed one"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Priority, rules::parse_loose_time};
    use chrono::FixedOffset;

    fn t(s: &str) -> DateTime<Utc> {
        parse_loose_time(s, FixedOffset::east_opt(8 * 3600).unwrap()).unwrap()
    }

    fn checked(event_id: &str, cust: &str, address: &str, governed: &str) -> Checked {
        Checked {
            event_id: event_id.into(),
            customer_id: cust.into(),
            region_code: "3201".into(),
            data_type: DataType::Address,
            operation: OperationType::Update,
            priority: Priority::High,
            governed_at: t(governed),
            seen_last_update: Some(t("2024-01-10 14:30:00")),
            writes: vec![
                (Column::Address, Value::Text(address.into())),
                (Column::QualityScore, Value::Float(0.92)),
                (Column::LastGovernanceTime, Value::Time(t(governed))),
            ],
            proposed: vec![
                (Column::Address, Value::Text(address.into())),
                (Column::QualityScore, Value::Float(0.92)),
                (Column::LastGovernanceTime, Value::Time(t(governed))),
            ],
            seen_values: vec![(
                Column::Address,
                Value::Text("江苏南京玄武区中山路123".into()),
            )],
            name: None,
            disposition: Disposition::Apply,
            review_priority: None,
            quality_gain: Some(0.27),
        }
    }

    fn snap_with(address: &str, last_update: &str) -> Snapshot {
        let mut s = Snapshot::default();
        s.rows.insert(
            "C1".into(),
            Row {
                address: Some(address.into()),
                last_update: Some(t(last_update)),
                version: 3,
                ..Default::default()
            },
        );
        s
    }

    const GOV: &str = "江苏省南京市玄武区中山路123号";
    const CONCURRENT: &str = "江苏省南京市玄武区中山路123号A座";

    #[test]
    fn applies_and_counts_versions() {
        let snap = snap_with("江苏南京玄武区中山路123", "2024-01-10 14:30:00");
        let c = checked("e1", "C1", GOV, "2024-01-15T10:20:00+08:00");
        let p = plan(&[&c], &[true], &snap, |_| ConflictPolicy::Review, |_, v| v);
        assert_eq!(p.decisions[0].as_ref().unwrap().outcome, Outcome::Applied);
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].row.address.as_deref(), Some(GOV));
        assert_eq!(p.updates[0].row.version, 4);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(
                p.decisions[0].as_ref().unwrap().before.as_ref().unwrap()
            )
            .unwrap()["address"],
            "江苏南京玄武区中山路123"
        );
    }

    #[test]
    fn the_seeds_concurrent_update_under_each_policy() {
        // Customer service wrote …123号A座 at 10:25, after the engine read the row.
        let snap = snap_with(CONCURRENT, "2024-01-15 10:25:00");
        let c = checked("e1", "C1", GOV, "2024-01-15T10:20:00+08:00");
        let review = plan(&[&c], &[true], &snap, |_| ConflictPolicy::Review, |_, v| v);
        assert_eq!(
            review.decisions[0].as_ref().unwrap().outcome,
            Outcome::Conflict
        );
        assert!(review.updates.is_empty());

        let over = plan(
            &[&c],
            &[true],
            &snap,
            |_| ConflictPolicy::Overwrite,
            |_, v| v,
        );
        assert_eq!(over.updates[0].row.address.as_deref(), Some(GOV));

        let merged = plan(&[&c], &[true], &snap, |_| ConflictPolicy::Merge, |_, v| v);
        let d = merged.decisions[0].as_ref().unwrap();
        assert_eq!((d.outcome, d.operation), (Outcome::Applied, "merge"));
        assert_eq!(merged.updates[0].row.address.as_deref(), Some(CONCURRENT));
        assert_eq!(merged.updates[0].row.quality_score, Some(0.92));
    }

    #[test]
    fn merge_gives_up_on_an_unrelated_concurrent_value() {
        let snap = snap_with("上海市浦东新区世纪大道100号", "2024-01-15 10:25:00");
        let c = checked("e1", "C1", GOV, "2024-01-15T10:20:00+08:00");
        let p = plan(&[&c], &[true], &snap, |_| ConflictPolicy::Merge, |_, v| v);
        assert_eq!(p.decisions[0].as_ref().unwrap().outcome, Outcome::Conflict);
        assert!(p.updates.is_empty());
    }

    #[test]
    fn same_customer_twice_collapses_to_one_write() {
        let snap = snap_with("old", "2024-01-10 14:30:00");
        let a = checked(
            "e1",
            "C1",
            "江苏省南京市玄武区中山路1号",
            "2024-01-15T10:00:00+08:00",
        );
        let b = checked(
            "e2",
            "C1",
            "江苏省南京市玄武区中山路2号",
            "2024-01-15T11:00:00+08:00",
        );
        let p = plan(
            &[&a, &b],
            &[true, true],
            &snap,
            |_| ConflictPolicy::Review,
            |_, v| v,
        );
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].row.version, 5);
        assert_eq!(
            p.updates[0].row.address.as_deref(),
            Some("江苏省南京市玄武区中山路2号")
        );
        // The second record's before-image is the first record's after-image.
        let d2 = p.decisions[1].as_ref().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(d2.before.as_ref().unwrap()).unwrap()["address"],
            "江苏省南京市玄武区中山路1号"
        );
    }

    #[test]
    fn stale_and_duplicate() {
        let mut snap = snap_with("old", "2024-01-10 14:30:00");
        snap.seen.insert("seen".into());
        snap.set_last_governed("C1", DataType::Address, t("2024-01-15T12:00:00+08:00"));
        let dup = checked("seen", "C1", GOV, "2024-01-15T13:00:00+08:00");
        let stale = checked("e2", "C1", GOV, "2024-01-15T11:00:00+08:00");
        let fresh = checked("e3", "C1", GOV, "2024-01-15T13:00:00+08:00");
        let again = checked("e3", "C1", GOV, "2024-01-15T13:00:00+08:00");
        let p = plan(
            &[&dup, &stale, &fresh, &again],
            &[true; 4],
            &snap,
            |_| ConflictPolicy::Review,
            |_, v| v,
        );
        let o: Vec<Outcome> = p
            .decisions
            .iter()
            .map(|d| d.as_ref().unwrap().outcome)
            .collect();
        assert_eq!(
            o,
            [
                Outcome::Duplicate,
                Outcome::Stale,
                Outcome::Applied,
                Outcome::Duplicate
            ]
        );
    }

    #[test]
    fn a_phone_result_never_makes_an_address_result_stale() {
        let mut snap = snap_with("old", "2024-01-10 14:30:00");
        snap.set_last_governed("C1", DataType::Phone, t("2024-01-16T00:00:00+08:00"));
        let c = checked("e1", "C1", GOV, "2024-01-15T10:20:00+08:00");
        let p = plan(&[&c], &[true], &snap, |_| ConflictPolicy::Review, |_, v| v);
        assert_eq!(p.decisions[0].as_ref().unwrap().outcome, Outcome::Applied);
    }

    #[test]
    fn insert_then_update_of_a_new_customer() {
        let snap = Snapshot::default();
        let mut ins = checked("e1", "NEW", GOV, "2024-01-15T10:00:00+08:00");
        ins.operation = OperationType::Insert;
        ins.seen_last_update = None;
        let upd = checked("e2", "NEW", CONCURRENT, "2024-01-15T10:05:00+08:00");
        let missing = checked("e3", "GHOST", GOV, "2024-01-15T10:05:00+08:00");
        let p = plan(
            &[&ins, &upd, &missing],
            &[true; 3],
            &snap,
            |_| ConflictPolicy::Review,
            |_, v| v,
        );
        assert_eq!(p.inserts.len(), 1);
        assert!(p.updates.is_empty());
        assert_eq!(p.inserts[0].row.version, 2);
        assert_eq!(p.inserts[0].row.address.as_deref(), Some(CONCURRENT));
        assert_eq!(p.decisions[2].as_ref().unwrap().outcome, Outcome::Invalid);
    }

    #[test]
    fn excluded_records_are_skipped() {
        let snap = snap_with("old", "2024-01-10 14:30:00");
        let a = checked("e1", "C1", GOV, "2024-01-15T10:00:00+08:00");
        let p = plan(&[&a], &[false], &snap, |_| ConflictPolicy::Review, |_, v| v);
        assert!(p.decisions[0].is_none());
        assert!(p.updates.is_empty());
    }
}
