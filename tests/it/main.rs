//! Integration tests against the real Kafka broker and PostgreSQL started
//! by `scripts/services up`. One binary (one link step) for all of them.

mod config_cli;
mod conflicts;
mod contract;
mod demo;
mod dlq;
mod exactly_once;
mod harness;
mod metrics;
mod oracle;
mod routing;
mod sink_suite;
mod skeleton;
mod workload;
