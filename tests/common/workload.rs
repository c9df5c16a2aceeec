//! A mixed workload with known outcomes, and the model of its final state:
//! what applying every event exactly once, in order, must leave behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use serde_json::{Value, json};
use sqlx::Row;

use super::harness::{Env, RawOut, header};

/// One message to publish: the key and value bytes, and what must become
/// of it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Applied,
    Flagged,
    /// Held for review (govsync's check contradicts the engine).
    Held,
    Duplicate,
    Stale,
    /// Dead-lettered with this error class.
    Dlq(&'static str),
}

/// Final state of one customer row in the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelRow {
    pub version: i64,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub validation_status: Option<String>,
    pub quality_score: Option<f64>,
    pub review_flag: Option<bool>,
}

pub struct Workload {
    pub customers: Vec<Customer>,
    pub msgs: Vec<Msg>,
}

impl Workload {
    /// `n` messages over `customers` customers in 4 regions.
    pub fn mixed(n: usize, customers: usize, seed: u64) -> Workload {
        use rand::Rng;
        let cs = generate::customers(customers, 4, seed);
        let mut rng = generate::rng(seed);
        let mut msgs: Vec<Msg> = Vec::with_capacity(n);
        // Applied events (for duplicates), and the latest governed index
        // written per (customer, data type) (for staleness).
        let mut applied: Vec<Value> = Vec::new();
        let mut written: HashMap<(String, DataType), usize> = HashMap::new();
        for i in 0..n {
            let c = &cs[rng.random_range(0..cs.len())];
            let key = Some(c.region.as_bytes().to_vec());
            let roll = rng.random_range(0..100);
            let (value, expect) = match roll {
                0..=69 => {
                    let dt = DataType::ALL[rng.random_range(0..3)];
                    let e = generate::event(
                        c,
                        dt,
                        &format!("w{seed}-{i}"),
                        generate::governed_at(10_000 + i),
                        roll % 7 == 0,
                    );
                    applied.push(e.clone());
                    write(&mut written, c, dt, 10_000 + i);
                    (e, Expect::Applied)
                }
                70..=75 => {
                    write(&mut written, c, DataType::IdCard, 10_000 + i);
                    (
                        generate::bad_check_digit_event(
                            c,
                            &format!("w{seed}-{i}"),
                            generate::governed_at(10_000 + i),
                        ),
                        Expect::Flagged,
                    )
                }
                76..=79 => {
                    // The engine says the number passes; its check digit is wrong.
                    let mut e = generate::bad_check_digit_event(
                        c,
                        &format!("w{seed}-{i}"),
                        generate::governed_at(10_000 + i),
                    );
                    e["governance_result"] = json!({"validation_status": "valid", "format_check": "passed", "checksum_validation": "passed", "quality_score": 0.95});
                    e["sync_operation"] = json!({"operation_type": "update", "target_fields": ["quality_score", "validation_status"]});
                    (e, Expect::Held)
                }
                80..=84 if !applied.is_empty() => {
                    // A producer retry: an earlier event again.
                    let e = applied[rng.random_range(0..applied.len())].clone();
                    let key = e["region_code"].as_str().map(|r| r.as_bytes().to_vec());
                    msgs.push(Msg {
                        key,
                        value: serde_json::to_vec(&e).unwrap(),
                        expect: Expect::Duplicate,
                    });
                    continue;
                }
                85..=89 => {
                    // Governed before results already published for this customer and type.
                    let dt = DataType::ALL[rng.random_range(0..3)];
                    let newer_written = written.get(&(c.id.clone(), dt)).is_some_and(|g| *g > i);
                    let e = generate::event(
                        c,
                        dt,
                        &format!("w{seed}-{i}"),
                        generate::governed_at(i),
                        false,
                    );
                    if newer_written {
                        (e, Expect::Stale)
                    } else {
                        applied.push(e.clone());
                        write(&mut written, c, dt, i);
                        (e, Expect::Applied)
                    }
                }
                90..=94 => {
                    let mut e = generate::event(
                        c,
                        DataType::Address,
                        &format!("w{seed}-{i}"),
                        generate::governed_at(10_000 + i),
                        false,
                    );
                    e["sync_operation"]["target_fields"] = json!(["address", "phone"]);
                    (e, Expect::Dlq("rule"))
                }
                _ => {
                    let bytes = format!("{{\"customer_id\": \"{}\", not json", c.id).into_bytes();
                    msgs.push(Msg {
                        key,
                        value: bytes,
                        expect: Expect::Dlq("malformed"),
                    });
                    continue;
                }
            };
            msgs.push(Msg {
                key,
                value: serde_json::to_vec(&value).unwrap(),
                expect,
            });
        }
        Workload {
            customers: cs,
            msgs,
        }
    }

    /// The model: every message applied exactly once in publish order
    /// (per customer, which is per region, which is per partition).
    pub fn model(&self) -> BTreeMap<String, ModelRow> {
        let mut rows: BTreeMap<String, ModelRow> = self
            .customers
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    ModelRow {
                        version: 0,
                        address: Some(c.raw_address.clone()),
                        phone: Some(c.phone.clone()),
                        validation_status: None,
                        quality_score: Some(c.quality_score),
                        // The dev table's default.
                        review_flag: Some(false),
                    },
                )
            })
            .collect();
        for m in &self.msgs {
            if !matches!(m.expect, Expect::Applied | Expect::Flagged) {
                continue;
            }
            let e: Value = serde_json::from_slice(&m.value).unwrap();
            let c = self
                .customers
                .iter()
                .find(|c| e["customer_id"] == json!(c.id))
                .unwrap();
            let row = rows.get_mut(&c.id).unwrap();
            row.version += 1;
            if m.expect == Expect::Flagged {
                row.quality_score = Some(0.25);
                row.validation_status = Some("invalid".into());
                row.review_flag = Some(true);
                continue;
            }
            match e["data_type"].as_str().unwrap() {
                "address" => {
                    row.address = Some(c.std_address.clone());
                    row.quality_score = Some(0.9);
                }
                "id_card" => {
                    row.validation_status = Some("valid".into());
                    row.quality_score = Some(0.95);
                }
                _ => {
                    row.phone = Some(c.phone.clone());
                    row.quality_score = Some(0.9);
                }
            }
        }
        rows
    }

    /// Event ids that must be on the review topic, each exactly once.
    pub fn expected_review(&self) -> BTreeSet<String> {
        self.msgs
            .iter()
            .filter(|m| matches!(m.expect, Expect::Flagged | Expect::Held))
            .map(|m| {
                serde_json::from_slice::<Value>(&m.value).unwrap()["event_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// Indices (publish order) of messages that must be dead-lettered.
    pub fn expected_dlq(&self) -> Vec<(usize, &'static str)> {
        self.msgs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m.expect {
                Expect::Dlq(class) => Some((i, class)),
                _ => None,
            })
            .collect()
    }

    /// Messages `range` as the harness publishes them.
    pub fn raw(&self, range: std::ops::Range<usize>) -> Vec<RawOut> {
        self.msgs[range]
            .iter()
            .map(|m| (m.key.clone(), m.value.clone(), vec![]))
            .collect()
    }

    pub fn counts(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for m in &self.msgs {
            *out.entry(format!("{:?}", m.expect)).or_default() += 1;
        }
        out
    }
}

/// Records that `c`'s results of type `dt` were governed at index `g` (the
/// latest wins).
fn write(written: &mut HashMap<(String, DataType), usize>, c: &Customer, dt: DataType, g: usize) {
    let w = written.entry((c.id.clone(), dt)).or_insert(g);
    *w = (*w).max(g);
}

/// Every record applied: the watermarks reach `total` and Kafka's
/// committed offsets the end of every partition.
pub async fn caught_up(env: &Env, total: i64) -> bool {
    let marks: i64 = env
        .count("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM govsync_watermark")
        .await;
    if marks < total {
        return false;
    }
    env.all_committed()
}

/// The invariant: table = model; review and DLQ topics hold each expected
/// message exactly once.
pub async fn assert_exactly_once(env: &Env, w: &Workload, offsets: &[(i32, i64)]) {
    assert_exactly_once_in(
        env,
        w,
        offsets,
        "SELECT customer_id, version, address, phone, validation_status, quality_score, review_flag \
         FROM customer_profile",
    )
    .await
}

/// [`assert_exactly_once`] with the table's rows read by `rows_sql` (under
/// govsync's logical names: customer_id, version, address, phone,
/// validation_status, quality_score, review_flag).
pub async fn assert_exactly_once_in(
    env: &Env,
    w: &Workload,
    offsets: &[(i32, i64)],
    rows_sql: &str,
) {
    let model = w.model();
    let rows = sqlx::query(sqlx::AssertSqlSafe(rows_sql.to_string()))
        .fetch_all(&env.pg)
        .await
        .unwrap();
    assert_eq!(rows.len(), model.len());
    let mut mismatches = Vec::new();
    for r in rows {
        let id: String = r.get("customer_id");
        let m = &model[&id];
        let got = ModelRow {
            version: r.get("version"),
            address: r.get("address"),
            phone: r.get("phone"),
            validation_status: r.get("validation_status"),
            quality_score: r.get("quality_score"),
            review_flag: r.get("review_flag"),
        };
        if got != *m {
            mismatches.push(format!("{id}: got {got:?}, model {m:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} rows differ from the model:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );

    // Review topic: every expected event id exactly once, nothing else.
    let review = env.read_topic(&env.raw.kafka.review_topic);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for m in &review {
        let doc: Value = serde_json::from_slice(m.value.as_ref().unwrap()).unwrap();
        *seen
            .entry(doc["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected = w.expected_review();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "review messages published more than once: {twice:?}"
    );
    let got: std::collections::BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(
        got, expected,
        "review topic holds exactly the expected events"
    );

    // Review items: written with the batches that sent the messages, so
    // after any crash there is one item per review message, each open or
    // superseded (open + superseded = raised; nobody decided here).
    let items: Vec<(String, String)> =
        sqlx::query_as("SELECT event_id, status FROM govsync_review_item")
            .fetch_all(&env.pg)
            .await
            .unwrap();
    let item_ids: std::collections::BTreeSet<String> =
        items.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(item_ids, got, "one review item per review message");
    let open = items.iter().filter(|(_, s)| s == "open").count();
    let superseded = items.iter().filter(|(_, s)| s == "superseded").count();
    assert_eq!(
        open + superseded,
        items.len(),
        "items are open or superseded: {items:?}"
    );
    eprintln!(
        "review items: {} raised = {open} open + {superseded} superseded",
        items.len()
    );

    // Dead-letter topic: every expected source offset exactly once, with
    // its class and its original bytes.
    let dlq = env.read_topic(&env.raw.kafka.dlq_topic);
    let mut by_offset: HashMap<(i32, i64), Vec<&govsync::message::RawMessage>> = HashMap::new();
    for m in &dlq {
        let p: i32 = header(m, "govsync.source.partition")
            .unwrap()
            .parse()
            .unwrap();
        let o: i64 = header(m, "govsync.source.offset").unwrap().parse().unwrap();
        by_offset.entry((p, o)).or_default().push(m);
    }
    let expected = w.expected_dlq();
    assert_eq!(
        dlq.len(),
        expected.len(),
        "one dead-letter message per invalid event"
    );
    for (i, class) in expected {
        let at = offsets[i];
        let got = by_offset
            .get(&at)
            .unwrap_or_else(|| panic!("message {i} at {at:?} not dead-lettered"));
        assert_eq!(got.len(), 1, "message {i} dead-lettered exactly once");
        assert_eq!(header(got[0], "govsync.error.class"), Some(class));
        assert_eq!(
            got[0].value.as_deref(),
            Some(w.msgs[i].value.as_slice()),
            "original bytes"
        );
        assert_eq!(got[0].key, w.msgs[i].key, "original key");
    }
}
