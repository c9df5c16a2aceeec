//! `govsync check-config`: validate the configuration, then reach Kafka
//! and the database, saying exactly what fails and how to fix it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::{self, Config, KafkaConfig};

/// Returns whether everything checked out.
pub async fn run(path: Option<&Path>, out: &mut impl Write) -> anyhow::Result<bool> {
    let cfg = match config::load(path) {
        Ok(c) => {
            writeln!(out, "config: ok")?;
            c
        }
        Err(e) => {
            writeln!(out, "config: {e}")?;
            return Ok(false);
        }
    };
    let ok = kafka(&cfg.kafka, out).await?;
    let ok = database(&cfg, ok, out).await?;
    writeln!(
        out,
        "{}",
        if ok {
            "all checks passed"
        } else {
            "some checks failed"
        }
    )?;
    Ok(ok)
}

/// Keeps librdkafka's last client error (its error callback: a failed SASL
/// authentication, a certificate that does not verify), which the metadata
/// request itself reports only as a transport failure.
#[derive(Default)]
struct LastError(std::sync::Mutex<Option<String>>);

impl rdkafka::ClientContext for LastError {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        tracing::debug!(target: "librdkafka", ?level, fac, "{message}");
        if matches!(
            level,
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning
        ) {
            self.keep(message);
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.keep(&format!("{error}: {reason}"));
    }
}

impl LastError {
    /// The first telling cause ("SASL authentication error", "certificate
    /// verify failed"); "brokers are down" only when nothing else came.
    fn keep(&self, cause: &str) {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let telling = !cause.contains("brokers are down");
        let have_telling = last
            .as_ref()
            .is_some_and(|l| !l.contains("brokers are down"));
        if last.is_none() || (telling && !have_telling) {
            *last = Some(cause.to_string());
        }
    }
}

impl rdkafka::consumer::ConsumerContext for LastError {}

/// What a failed connection most likely means, from librdkafka's error.
fn kafka_hint(cause: &str) -> &'static str {
    let c = cause.to_ascii_lowercase();
    if c.contains("certificate") || c.contains("ssl routines") || c.contains("ssl_handshake") {
        "the TLS handshake failed: check kafka.client's ssl.ca.location (the CA that signed the \
         broker's certificate) and that the host name matches the certificate"
    } else if c.contains("sasl authentication") || c.contains("invalid credentials") {
        "the broker refused the credentials: check kafka.client's sasl.username and the password \
         (kafka.sasl_password_file or the variable named by kafka.sasl_password_env)"
    } else {
        "check kafka.bootstrap_servers and that the broker runs"
    }
}

/// Kafka: metadata of the three topics. Returns whether all is well.
async fn kafka(k: &KafkaConfig, out: &mut impl Write) -> std::io::Result<bool> {
    let mut ok = true;
    let context = LastError::default();
    let client: Result<BaseConsumer<LastError>, _> = crate::kafka::tool_config(k)
        .set("socket.timeout.ms", "5000")
        .create_with_context(context);
    let kafka_result = match client {
        Err(e) => Err(format!("cannot create a client: {e} (check kafka.client)")),
        Ok(c) => tokio::task::spawn_blocking(move || {
            c.fetch_metadata(None, Duration::from_secs(8)).map_err(|e| {
                // The client's error events arrive through its queue.
                for _ in 0..5 {
                    let _ = c.poll(Duration::from_millis(100));
                }
                match c.context().0.lock().ok().and_then(|l| l.clone()) {
                    Some(cause) => format!("{e}; first: {cause}"),
                    None => e.to_string(),
                }
            })
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r),
    };
    match kafka_result {
        Err(e) => {
            ok = false;
            writeln!(
                out,
                "kafka: cannot reach {} ({e}); {}",
                k.bootstrap_servers,
                kafka_hint(&e)
            )?;
        }
        Ok(md) => {
            writeln!(
                out,
                "kafka: reached {} ({} brokers)",
                k.bootstrap_servers,
                md.brokers().len()
            )?;
            for (key, t) in [
                ("kafka.source_topic", &k.source_topic),
                ("kafka.review_topic", &k.review_topic),
                ("kafka.dlq_topic", &k.dlq_topic),
            ] {
                match md.topics().iter().find(|x| x.name() == t.as_str()) {
                    Some(x) if x.error().is_none() => writeln!(
                        out,
                        "kafka: topic {t} ({} partitions)",
                        x.partitions().len()
                    )?,
                    _ => {
                        ok = false;
                        writeln!(
                            out,
                            "kafka: topic {t} (config key `{key}`) does not exist; create it or run `govsync migrate --topics`"
                        )?;
                    }
                }
            }
        }
    }
    Ok(ok)
}

/// The target table against `database.mapping`: each problem on its own
/// line with its fix.
async fn target_table(
    db: &dyn crate::sink::Database,
    table: &str,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    match tokio::time::timeout(Duration::from_secs(15), db.check_table()).await {
        Ok(Ok(map)) => {
            let fields: Vec<String> = map
                .mapped()
                .map(|(c, m)| format!("{c} -> {}", m.column))
                .collect();
            writeln!(
                out,
                "database: target table {table} fits database.mapping (key {}; {}; version {})",
                map.key,
                fields.join(", "),
                map.version
                    .as_deref()
                    .unwrap_or("kept in govsync_row_state")
            )?;
            Ok(true)
        }
        Ok(Err(e)) => {
            writeln!(out, "database: {e}")?;
            Ok(false)
        }
        Err(_) => {
            writeln!(
                out,
                "database: reading the catalog of {table} took longer than 15 s"
            )?;
            Ok(false)
        }
    }
}

/// Database: connect, then govsync's tables (probed only when everything
/// so far, `ok`, passed). Returns whether all is well.
async fn database(cfg: &Config, mut ok: bool, out: &mut impl Write) -> std::io::Result<bool> {
    let k = &cfg.kafka;
    let d = &cfg.database;
    match tokio::time::timeout(Duration::from_secs(15), crate::sink::connect(d)).await {
        Err(_) => {
            ok = false;
            writeln!(out, "database: timed out connecting to {}", d.url)?;
        }
        Ok(Err(e)) => {
            ok = false;
            writeln!(out, "database: cannot open {}: {e}", d.url)?;
            writeln!(
                out,
                "  fix: check the config key `database.url` (and the password in the variable named by `database.password_env`)"
            )?;
        }
        Ok(Ok(db)) => {
            let mut reached = false;
            match tokio::time::timeout(Duration::from_secs(10), db.ping()).await {
                Ok(Ok(())) => {
                    reached = true;
                    writeln!(out, "database: reached {} ({})", d.url, db.kind())?
                }
                Ok(Err(e)) => {
                    ok = false;
                    writeln!(
                        out,
                        "database: {} does not answer ({e}); check database.url and the password (database.password_env)",
                        d.url
                    )?;
                }
                Err(_) => {
                    ok = false;
                    writeln!(
                        out,
                        "database: {} did not answer within 10 s; check database.url",
                        d.url
                    )?;
                }
            }
            // Checked whenever the database answered (a broker that is down
            // does not hide a table that does not fit).
            if reached {
                let probe = crate::sink::PartitionKey {
                    group: k.group_id.clone(),
                    topic: k.source_topic.clone(),
                    partition: 0,
                };
                match db.watermark(&probe).await {
                    Ok(_) => writeln!(out, "database: govsync tables present")?,
                    Err(e) => {
                        ok = false;
                        writeln!(
                            out,
                            "database: govsync tables missing or unreadable ({e}); run `govsync migrate`"
                        )?;
                    }
                }
                ok &= target_table(db.as_ref(), &d.target_table, out).await?;
            }
            db.close().await;
        }
    }
    Ok(ok)
}
