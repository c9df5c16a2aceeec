//! `decode` and `decode_and_check` never panic on arbitrary input.

use std::time::Instant;

use govsync::event::{self, RuleSet};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::corpus::{mutate, valid_events};
use crate::schemas::NO_LIMIT;

/// Arbitrary bytes, and JSON documents mutated the way the agreement test
/// mutates them (plus byte-level damage), never make `decode` or `decode_and_check`
/// panic. Deterministic (fixed seeds) and bounded: a few thousand cases.
#[test]
fn decoding_and_checking_never_panic() {
    let started = Instant::now();
    let rules = RuleSet::default();
    random_bytes(&rules);
    let t1 = started.elapsed();
    let valid = valid_events();
    let cases = mutated_valid_events(&valid, &rules);
    let t2 = started.elapsed();
    let rule_cases = rule_inputs(&valid, &rules);
    println!(
        "decoding_and_checking_never_panic: 2000 byte strings ({t1:?}), {cases} mutated events ({:?}), {rule_cases} rule inputs ({:?})",
        t2 - t1,
        started.elapsed() - t2
    );
}

fn run(bytes: &[u8], rules: &RuleSet) {
    let _ = event::decode(bytes, 4096);
    let _ = event::decode_and_check(bytes, NO_LIMIT, rules);
}

fn config() -> Config {
    Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    }
}

/// 1. Random bytes, biased towards JSON punctuation.
fn random_bytes(rules: &RuleSet) {
    let mut runner =
        TestRunner::new_with_rng(config(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    // Even bytes become JSON punctuation, odd ones stay as they are.
    const PUNCT: &[u8] = b"{}[]\":,0123456789.eE+-tfnul \\";
    let bytes = proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| {
        v.into_iter()
            .map(|b| {
                if b % 2 == 0 {
                    PUNCT[usize::from(b / 2) % PUNCT.len()]
                } else {
                    b
                }
            })
            .collect::<Vec<u8>>()
    });
    runner
        .run(&bytes, |bytes| {
            run(&bytes, rules);
            Ok(())
        })
        .unwrap();
}

/// 2. Mutated valid events (1–5 mutations), then sometimes byte damage.
///
/// Returns the number of cases.
fn mutated_valid_events(valid: &[(String, Vec<u8>)], rules: &RuleSet) -> usize {
    let mut runner =
        TestRunner::new_with_rng(config(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let cases = std::cell::Cell::new(0);
    runner
        .run(&(0..valid.len(), any::<u64>()), |(i, seed)| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut v: Value = serde_json::from_slice(&valid[i].1).unwrap();
            for _ in 0..rng.random_range(1..6) {
                if v.as_object().is_none_or(|o| o.is_empty()) {
                    break;
                }
                mutate(&mut v, &mut rng);
            }
            let mut bytes = serde_json::to_vec(&v).unwrap();
            match rng.random_range(0..4) {
                0 if !bytes.is_empty() => {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
                1 => bytes.truncate(rng.random_range(0..=bytes.len())),
                _ => {}
            }
            run(&bytes, rules);
            cases.set(cases.get() + 1);
            Ok(())
        })
        .unwrap();
    cases.get()
}

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// 3. Values the rules parse: ID numbers, phone numbers, times.
///
/// Returns the number of cases.
fn rule_inputs(valid: &[(String, Vec<u8>)], rules: &RuleSet) -> usize {
    let mut rng = StdRng::seed_from_u64(0x1d_ca4d);
    let mut rule_cases = 0;
    for i in 0..1500 {
        let mut v: Value = serde_json::from_slice(&valid[i % valid.len()].1).unwrap();
        let n = [15, 17, 18, 18, 18, 19][rng.random_range(0..6)];
        let mut id = digits(&mut rng, n);
        if rng.random_bool(0.2) {
            id.push(['x', 'X', '中', ' '][rng.random_range(0..4)]);
        }
        let phone = match rng.random_range(0..5) {
            0 => {
                let n = rng.random_range(0..20);
                digits(&mut rng, n)
            }
            1 => {
                let n = rng.random_range(1..16);
                format!("+{}", digits(&mut rng, n))
            }
            2 => format!("+86 {} {}", digits(&mut rng, 3), digits(&mut rng, 8)),
            3 => "+".repeat(rng.random_range(1..5)),
            _ => format!("{}-{}", digits(&mut rng, 4), digits(&mut rng, 8)),
        };
        let time = format!(
            "{}-{}-{}T{}:{}:{}{}",
            digits(&mut rng, 4),
            digits(&mut rng, 2),
            digits(&mut rng, 2),
            digits(&mut rng, 2),
            digits(&mut rng, 2),
            digits(&mut rng, 2),
            ["Z", "+23:59", "-99:99", "+08:00", ".999999999Z"][rng.random_range(0..5)]
        );
        let loose = format!("{} {}", &time[..10], &time[11..19]);
        v["original_data"]["id_card"] = json!(id);
        v["governance_result"]["suggested_correction"] = json!(digits(&mut rng, 18));
        v["original_data"]["phone"] = json!(phone);
        if rng.random_bool(0.5) {
            v["governed_at"] = json!(time);
        } else {
            v["original_data"]["last_update"] = json!(loose);
        }
        v["county_code"] = json!(digits(&mut rng, 6));
        v["governance_result"]["standardized_address"] = json!(
            [
                "北京市",
                "省",
                "市区",
                "江苏省南京市玄武区",
                "a",
                "上海市浦东新区"
            ][rng.random_range(0..6)]
        );
        run(&serde_json::to_vec(&v).unwrap(), rules);
        rule_cases += 1;
    }
    rule_cases
}
