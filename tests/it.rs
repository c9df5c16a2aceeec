//! Integration tests against the real Kafka broker and PostgreSQL started
//! by `scripts/services up`. One binary (one link step) for all of them.
//!
//! This crate root sits beside `tests/common/` so that `mod common;` finds
//! the shared harness; the tests themselves are the files of `tests/it/`
//! (the inline module `it` below, so their names start with `it::`).

mod common;

mod it {
    mod browser;
    mod config_cli;
    mod conflicts;
    mod console;
    mod decisions;
    mod demo;
    mod dlq;
    mod exactly_once;
    mod mapping;
    mod metrics;
    mod retention;
    mod review_cli;
    mod routing;
    mod scale_out;
    mod security;
    mod sink;
    mod skeleton;
    mod upgrade;
}
