//! Debezium's side of a run: Kafka Connect 4.3.1 in standalone mode with
//! the Debezium JDBC sink, configured as the earlier measurement was (4
//! tasks, batches of 2000, upsert, primary key `customer_id` from the
//! record value, JsonConverter with schemas), either writer; the records
//! (the same new values as govsync's events: address, coordinates, quality
//! score 0.9, governance time); the JVM with the heap and GC options of
//! Kafka's own `connect-standalone.sh`.
//!
//! Delivery: at least once. Connect commits the consumer offsets of what
//! the sink flushed every `offset.flush.interval.ms` (here the default,
//! 60 s); after a crash the records since are written again, which the
//! upsert makes harmless for these rows.

use std::path::Path;
use std::process::Command;

use chrono::{SecondsFormat, Utc};
use govsync::demo::generate::{self, Customer};
use serde_json::json;

use crate::child::Child;
use crate::setup::{Setup, Writer};

/// The JVM options of Kafka's bin/connect-standalone.sh (KAFKA_HEAP_OPTS
/// and KAFKA_JVM_PERFORMANCE_OPTS defaults); PEER_CONNECT_HEAP replaces
/// the heap part.
const JVM_OPTS: &[&str] = &[
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
];
const DEFAULT_HEAP: &str = "-Xms256M -Xmx2G";

pub const BATCH_SIZE: usize = 2000;
pub const TASKS: usize = 4;

/// Writes `<dir>/worker.properties` and `<dir>/connector.properties`.
pub fn write_config(
    setup: &Setup,
    writer: Writer,
    tag: &str,
    topic: &str,
    schema: &str,
    dir: &Path,
) {
    let worker = format!(
        "bootstrap.servers={kafka}\n\
         key.converter=org.apache.kafka.connect.storage.StringConverter\n\
         value.converter=org.apache.kafka.connect.json.JsonConverter\n\
         value.converter.schemas.enable=true\n\
         offset.storage.file.filename={offsets}\n\
         plugin.path={plugins}\n\
         listeners=http://127.0.0.1:0\n\
         # a sink task flushes at most one poll's records at a time\n\
         consumer.max.poll.records={BATCH_SIZE}\n",
        kafka = setup.kafka,
        offsets = dir.join("connect.offsets").display(),
        plugins = setup.connect.join("plugins").display(),
    );
    let unnest = writer == Writer::Unnest;
    let connector = format!(
        "name={tag}\n\
         connector.class=io.debezium.connector.jdbc.JdbcSinkConnector\n\
         tasks.max={TASKS}\n\
         topics={topic}\n\
         connection.url={url}\n\
         connection.username={user}\n\
         connection.password={password}\n\
         insert.mode=upsert\n\
         primary.key.mode=record_value\n\
         primary.key.fields=customer_id\n\
         schema.evolution=none\n\
         collection.name.format={schema}.customer_profile\n\
         batch.size={BATCH_SIZE}\n\
         dialect.postgres.unnest.insert.enabled={unnest}\n",
        url = setup.pg.jdbc_url(),
        user = setup.pg.user,
        password = setup.pg.password,
    );
    std::fs::write(dir.join("worker.properties"), worker).unwrap();
    std::fs::write(dir.join("connector.properties"), connector).unwrap();
}

/// The JsonConverter envelope's schema: the columns an address update
/// writes, `customer_id` first.
fn schema() -> serde_json::Value {
    let field = |name: &str, ty: &str| json!({"field": name, "type": ty, "optional": true});
    let mut governed = field("last_governance_time", "string");
    governed["name"] = json!("io.debezium.time.ZonedTimestamp");
    governed["version"] = json!(1);
    json!({
        "type": "struct",
        "name": "govsync.peer.CustomerAddress",
        "optional": false,
        "fields": [
            {"field": "customer_id", "type": "string", "optional": false},
            field("address", "string"),
            field("geo_lat", "double"),
            field("geo_lon", "double"),
            field("quality_score", "double"),
            governed,
        ]
    })
}

/// Record `i`: customer `i`'s new values with their schema, keyed by region.
/// The governance time is written in UTC: with another offset (the
/// events' +08:00) the UNNEST writer of 3.6.0.Final stores the local time
/// as if it were UTC (10:00+08:00 became 10:00Z); the default writer
/// stores either form correctly.
pub fn records(customers: &[Customer]) -> impl Fn(usize) -> (Vec<u8>, Vec<u8>) + '_ {
    let schema = schema().to_string();
    move |i| {
        let c = &customers[i];
        let payload = json!({
            "customer_id": c.id,
            "address": c.std_address,
            "geo_lat": c.lat,
            "geo_lon": c.lon,
            "quality_score": 0.9,
            "last_governance_time": generate::governed_at(i)
                .with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        let value = format!(r#"{{"schema":{schema},"payload":{payload}}}"#);
        (c.region.as_bytes().to_vec(), value.into_bytes())
    }
}

/// ConnectStandalone with the worker and connector of `dir`, logging to
/// `<dir>/connect.log`.
pub fn start(setup: &Setup, dir: &Path) -> Child {
    let heap = std::env::var("PEER_CONNECT_HEAP").unwrap_or_else(|_| DEFAULT_HEAP.into());
    let log4j = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/connect/log4j2.xml");
    let mut cmd = Command::new("java");
    cmd.args(heap.split_whitespace())
        .args(JVM_OPTS)
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!("{}/*", setup.connect.join("lib").display()))
        .arg("org.apache.kafka.connect.cli.ConnectStandalone")
        .arg(dir.join("worker.properties"))
        .arg(dir.join("connector.properties"));
    Child::spawn("Kafka Connect", cmd, &dir.join("connect.log"), &setup.work)
}
