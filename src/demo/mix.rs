//! The demo's message mix: mostly updates, plus a share of every case the
//! processor must handle (inserts, flagged and contradicted ID numbers,
//! malformed messages, rule violations, duplicates, stale results and
//! conflicts), deterministic from the seed.

use rand::Rng;
use serde_json::{Value, json};

use super::generate::{self, Customer};
use crate::event::DataType;

/// Kinds of generated messages, and their share per thousand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Update,
    Insert,
    BadCheckDigit,
    Contradiction,
    Malformed,
    RuleViolation,
    Duplicate,
    Stale,
    Conflict,
}

const MIX: [(Kind, u32); 9] = [
    (Kind::Update, 820),
    (Kind::Insert, 30),
    (Kind::BadCheckDigit, 30),
    (Kind::Contradiction, 20),
    (Kind::Malformed, 20),
    (Kind::RuleViolation, 20),
    (Kind::Duplicate, 30),
    (Kind::Stale, 15),
    (Kind::Conflict, 15),
];

/// Generates the demo's message mix.
pub(super) struct Mixer<'a> {
    customers: &'a [Customer],
    conflicted: usize,
    rng: rand::rngs::StdRng,
    /// Earlier update events: (bytes, customer index, data type, governed index).
    history: Vec<(Vec<u8>, usize, DataType, usize)>,
    inserted: usize,
}

impl<'a> Mixer<'a> {
    pub(super) fn new(customers: &'a [Customer], conflicted: usize, seed: u64) -> Self {
        Mixer {
            customers,
            conflicted,
            rng: generate::rng(seed ^ 0x5eed),
            history: Vec::new(),
            inserted: 0,
        }
    }

    fn kind(&mut self) -> Kind {
        let mut roll = self.rng.random_range(0..1000u32);
        for (k, share) in MIX {
            if roll < share {
                return k;
            }
            roll -= share;
        }
        Kind::Update
    }

    /// The `i`-th message: (key, value).
    pub(super) fn next(&mut self, i: usize) -> (Vec<u8>, Vec<u8>) {
        let id = format!("demo-{i:08}");
        let governed = 1_000_000 + i;
        match self.kind() {
            Kind::Update => self.update(&id, governed),
            Kind::Insert => self.insert(&id, governed),
            Kind::BadCheckDigit => self.bad_check_digit(&id, governed),
            Kind::Contradiction => self.contradiction(&id, governed),
            Kind::Malformed => self.malformed(),
            Kind::RuleViolation => self.rule_violation(&id, governed),
            Kind::Duplicate if !self.history.is_empty() => self.duplicate(),
            Kind::Stale if !self.history.is_empty() => self.stale(&id),
            Kind::Conflict if self.conflicted > 0 => self.conflict(&id, governed),
            _ => self.phone_update(&id, governed),
        }
    }

    /// The index of a customer that is not a conflicted one.
    fn pick(&mut self) -> usize {
        let n = self.customers.len();
        self.conflicted + self.rng.random_range(0..n - self.conflicted)
    }

    fn update(&mut self, id: &str, governed: usize) -> (Vec<u8>, Vec<u8>) {
        let ci = self.pick();
        let c = &self.customers[ci];
        let dt = DataType::ALL[self.rng.random_range(0..3)];
        let e = generate::event(
            c,
            dt,
            id,
            generate::governed_at(governed),
            self.rng.random_bool(0.1),
        );
        let bytes = serde_json::to_vec(&e).unwrap_or_default();
        self.history.push((bytes.clone(), ci, dt, governed));
        (c.region.as_bytes().to_vec(), bytes)
    }

    fn insert(&mut self, id: &str, governed: usize) -> (Vec<u8>, Vec<u8>) {
        self.inserted += 1;
        let n = self.customers.len();
        let mut c = self.customers[self.rng.random_range(0..n)].clone();
        c.id = format!("NEW_{}_{:07}", c.county, self.inserted);
        let mut e = generate::event(
            &c,
            DataType::Address,
            id,
            generate::governed_at(governed),
            false,
        );
        e["sync_operation"]["operation_type"] = json!("insert");
        if let Some(o) = e["original_data"].as_object_mut() {
            o.remove("last_update");
        }
        message(&c, &e)
    }

    fn bad_check_digit(&mut self, id: &str, governed: usize) -> (Vec<u8>, Vec<u8>) {
        let c = &self.customers[self.pick()];
        let e = generate::bad_check_digit_event(c, id, generate::governed_at(governed));
        message(c, &e)
    }

    fn contradiction(&mut self, id: &str, governed: usize) -> (Vec<u8>, Vec<u8>) {
        let c = &self.customers[self.pick()];
        let mut e = generate::bad_check_digit_event(c, id, generate::governed_at(governed));
        e["governance_result"] = json!({"validation_status": "valid", "format_check": "passed", "checksum_validation": "passed", "quality_score": 0.95});
        e["sync_operation"] = json!({"operation_type": "update", "target_fields": ["quality_score", "validation_status"]});
        message(c, &e)
    }

    fn malformed(&mut self) -> (Vec<u8>, Vec<u8>) {
        let n = self.customers.len();
        let c = &self.customers[self.rng.random_range(0..n)];
        (
            c.region.as_bytes().to_vec(),
            format!("{{\"customer_id\": \"{}\", \"data_type\": ", c.id).into_bytes(),
        )
    }

    fn rule_violation(&mut self, id: &str, governed: usize) -> (Vec<u8>, Vec<u8>) {
        let c = &self.customers[self.pick()];
        let mut e = generate::event(
            c,
            DataType::Phone,
            id,
            generate::governed_at(governed),
            false,
        );
        e["sync_operation"]["target_fields"] = json!(["phone", "address"]);
        message(c, &e)
    }

    fn duplicate(&mut self) -> (Vec<u8>, Vec<u8>) {
        let (bytes, ci, _, _) = self.history[self.rng.random_range(0..self.history.len())].clone();
        (self.customers[ci].region.as_bytes().to_vec(), bytes)
    }

    fn stale(&mut self, id: &str) -> (Vec<u8>, Vec<u8>) {
        let (_, ci, dt, g) = self.history[self.rng.random_range(0..self.history.len())].clone();
        let c = &self.customers[ci];
        let e = generate::event(c, dt, id, generate::governed_at(g - 500_000), false);
        message(c, &e)
    }

    fn conflict(&mut self, id: &str, governed: usize) -> (Vec<u8>, Vec<u8>) {
        let c = &self.customers[self.rng.random_range(0..self.conflicted)];
        let e = generate::event(
            c,
            DataType::Address,
            id,
            generate::governed_at(governed),
            false,
        );
        message(c, &e)
    }

    fn phone_update(&mut self, id: &str, governed: usize) -> (Vec<u8>, Vec<u8>) {
        let c = &self.customers[self.pick()];
        let e = generate::event(
            c,
            DataType::Phone,
            id,
            generate::governed_at(governed),
            false,
        );
        message(c, &e)
    }
}

/// The customer's region as the key, the event as the value.
fn message(c: &Customer, e: &Value) -> (Vec<u8>, Vec<u8>) {
    (
        c.region.as_bytes().to_vec(),
        serde_json::to_vec(e).unwrap_or_default(),
    )
}
