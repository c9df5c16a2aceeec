//! The corpus the schema and the decoder are compared on: valid events
//! (the seed samples, generated events, the hand-made [`edges`] of the
//! contract) and invalid or surprising ones (the [`named`] mutations, and
//! [`mutate`]'s random mutations of valid events).

mod edges;
mod mutate;
mod named;

use govsync::demo::generate;
use govsync::event::DataType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use edges::edge_valid_events;
pub use mutate::{mutate, trunc};
use named::named_mutations;

use crate::schemas::{seed, seed_files};

/// Generated events: every data type, both priorities, and the engine's
/// correctly flagged bad check digits.
pub fn generated_events(n: usize) -> Vec<(String, Value)> {
    let customers = generate::customers(n, 4, 20240115);
    let mut out = Vec::new();
    for (i, c) in customers.iter().enumerate() {
        let dt = DataType::ALL[i % 3];
        let high = (i / 3) % 2 == 0;
        let at = generate::governed_at(i);
        let e = generate::event(c, dt, &format!("gen-{i:05}"), at, high);
        out.push((format!("generated {dt} #{i} high={high}"), e));
        if i % 10 == 0 {
            let e = generate::bad_check_digit_event(c, &format!("bad-{i:05}"), at);
            out.push((format!("generated bad check digit #{i}"), e));
        }
    }
    out
}

pub fn base_address() -> Value {
    serde_json::from_slice(&seed(1)).unwrap()
}
pub fn base_id_card() -> Value {
    serde_json::from_slice(&seed(4)).unwrap()
}
pub fn base_phone() -> Value {
    serde_json::from_slice(&seed(5)).unwrap()
}

/// Sets `path` (dot-separated keys) in `v`, creating objects on the way.
pub fn set(mut v: Value, path: &str, x: Value) -> Value {
    let mut cur = &mut v;
    let keys: Vec<&str> = path.split('.').collect();
    for k in &keys[..keys.len() - 1] {
        cur = cur
            .as_object_mut()
            .expect("an object on the path")
            .entry(k.to_string())
            .or_insert_with(|| json!({}));
    }
    cur.as_object_mut()
        .expect("an object on the path")
        .insert(keys[keys.len() - 1].to_string(), x);
    v
}

pub fn remove(mut v: Value, path: &str) -> Value {
    let mut cur = &mut v;
    let keys: Vec<&str> = path.split('.').collect();
    for k in &keys[..keys.len() - 1] {
        cur = cur.get_mut(*k).expect("path exists");
    }
    cur.as_object_mut().unwrap().remove(keys[keys.len() - 1]);
    v
}

pub fn chars(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

/// The seed samples, 270 generated events and the edge cases, as bytes.
pub fn valid_events() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = seed_files()
        .into_iter()
        .map(|(n, b)| (format!("seed {n}"), b))
        .collect();
    for (n, v) in generated_events(270).into_iter().chain(edge_valid_events()) {
        out.push((n, serde_json::to_vec(&v).unwrap()));
    }
    out
}

/// The named mutations, then `n` random mutations (one to three rounds
/// each) of events drawn from `valid`, deterministic for `seed`.
pub fn mutated_events(valid: &[(String, Vec<u8>)], n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = named_mutations();
    for _ in 0..n {
        let (base_name, base) = &valid[rng.random_range(0..valid.len())];
        let mut v: Value = serde_json::from_slice(base).unwrap();
        let rounds = if rng.random_bool(0.75) {
            1
        } else {
            rng.random_range(2..4)
        };
        let mut what = Vec::new();
        for _ in 0..rounds {
            if v.as_object().is_none_or(|o| o.is_empty()) {
                break;
            }
            what.push(mutate(&mut v, &mut rng));
        }
        out.push((
            format!("{base_name}: {}", what.join("; ")),
            serde_json::to_vec(&v).unwrap(),
        ));
    }
    out
}
