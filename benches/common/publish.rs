//! Publishing governance events fast, for the benchmarks that feed a
//! backlog through the real broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use rdkafka::ClientConfig;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};

pub fn kafka() -> String {
    std::env::var("GOVSYNC_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Pre-serialised events, one per customer (data types in turn), with a
/// fixed-width slot for the event id.
pub struct Templates {
    items: Vec<(Vec<u8>, Vec<u8>, usize)>,
}

const SLOT: &str = "##########";

impl Templates {
    pub fn new(customers: &[Customer]) -> Templates {
        let items = customers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let e = generate::event(
                    c,
                    DataType::ALL[i % 3],
                    &format!("e2e-{SLOT}"),
                    // Governed now, as production results are (the change
                    // log's daily partition of today).
                    chrono::Utc::now().with_timezone(&generate::local()),
                    false,
                );
                let bytes = serde_json::to_vec(&e).unwrap();
                let at = bytes
                    .windows(SLOT.len())
                    .position(|w| w == SLOT.as_bytes())
                    .unwrap();
                (c.region.as_bytes().to_vec(), bytes, at)
            })
            .collect();
        Templates { items }
    }

    /// Message `n`: customer `n % customers`, event id `e2e-<n>`.
    pub fn message(&self, n: usize) -> (&[u8], Vec<u8>) {
        let (key, bytes, at) = &self.items[n % self.items.len()];
        let mut v = bytes.clone();
        v[*at..*at + SLOT.len()].copy_from_slice(format!("{n:010}").as_bytes());
        (key, v)
    }
}

#[derive(Clone)]
pub struct Deliveries(Arc<AtomicU64>);

impl rdkafka::ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            eprintln!("delivery failed: {e}");
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub fn producer(linger_ms: u32) -> (BaseProducer<Deliveries>, Arc<AtomicU64>) {
    let failed = Arc::new(AtomicU64::new(0));
    let p = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "900000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "524288")
        .create_with_context(Deliveries(failed.clone()))
        .unwrap();
    (p, failed)
}

/// Sends message `n` to partition `n % partitions` (customer `n` always
/// lands on the same partition, so its events stay in order); returns the
/// send time.
pub fn send(
    p: &BaseProducer<Deliveries>,
    topic: &str,
    t: &Templates,
    n: usize,
    partitions: usize,
) -> i64 {
    let (key, value) = t.message(n);
    let customer = n % t.items.len();
    let at = now_ms();
    let mut rec = BaseRecord::to(topic)
        .key(key)
        .payload(&value)
        .partition((customer % partitions) as i32)
        .timestamp(at);
    loop {
        match p.send(rec) {
            Ok(()) => return at,
            Err((_, back)) => {
                rec = back;
                p.poll(Duration::from_millis(5));
            }
        }
    }
}
