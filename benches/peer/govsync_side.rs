//! govsync's side of a run: a config file that keeps every default
//! (exactly-once `transactional` delivery, change log, watermark, outbox,
//! adaptive batches) and sets only the broker, group and instance ids,
//! topics, database and schema, with /metrics off; `govsync migrate
//! --with-target-table`; the governance events; `govsync run`.

use std::path::{Path, PathBuf};
use std::process::Command;

use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;

use crate::child::Child;
use crate::setup::Setup;

pub struct Names<'a> {
    pub tag: &'a str,
    pub schema: &'a str,
    pub source: &'a str,
    pub review: &'a str,
    pub dlq: &'a str,
}

/// Writes `<dir>/govsync.toml`.
pub fn write_config(setup: &Setup, names: &Names<'_>, dir: &Path) -> PathBuf {
    let toml = format!(
        "[kafka]\n\
         bootstrap_servers = \"{kafka}\"\n\
         group_id = \"{tag}\"\n\
         instance_id = \"{tag}\"\n\
         source_topic = \"{source}\"\n\
         review_topic = \"{review}\"\n\
         dlq_topic = \"{dlq}\"\n\
         \n\
         [database]\n\
         url = \"{url}\"\n\
         schema = \"{schema}\"\n\
         \n\
         [metrics]\n\
         listen = \"\"\n\
         \n\
         [review]\n\
         # the peer has no review loop: measured without the decision applier\n\
         apply_decisions = false\n",
        kafka = setup.kafka,
        tag = names.tag,
        source = names.source,
        review = names.review,
        dlq = names.dlq,
        url = setup.pg.url_without_password(),
        schema = names.schema,
    );
    let path = dir.join("govsync.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn command(setup: &Setup, args: &[&str], config: &Path) -> Command {
    let mut cmd = Command::new(&setup.govsync_bin);
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("GOVSYNC_DB_PASSWORD", &setup.pg.password);
    cmd
}

/// `govsync migrate --with-target-table`: govsync's tables and the dev
/// `customer_profile` in the run's schema.
pub fn migrate(setup: &Setup, config: &Path) {
    let out = command(setup, &["migrate", "--with-target-table"], config)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", setup.govsync_bin.display()));
    assert!(
        out.status.success(),
        "govsync migrate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Message `i`: the address update of customer `i` (operation update,
/// target fields address, coordinates, quality_score,
/// last_governance_time, as the generator makes it), keyed by region.
pub fn message(customers: &[Customer], i: usize) -> (Vec<u8>, Vec<u8>) {
    let c = &customers[i];
    let e = generate::event(
        c,
        DataType::Address,
        &format!("peer-{i}"),
        generate::governed_at(i),
        false,
    );
    (
        c.region.as_bytes().to_vec(),
        serde_json::to_vec(&e).unwrap(),
    )
}

/// `govsync run`, logging to `<dir>/govsync.log`.
pub fn start(setup: &Setup, config: &Path, dir: &Path) -> Child {
    let cmd = command(setup, &["run"], config);
    Child::spawn("govsync run", cmd, &dir.join("govsync.log"), &setup.work)
}
