//! `govsync demo`: the whole job on embedded defaults.
//!
//! An in-process Kafka broker (librdkafka's mock cluster, speaking the real
//! protocol on a loopback port) and a SQLite file stand in for the real
//! places; everything else is the real code: the same pipeline as `govsync
//! run`, the same batch protocol, the same review and dead-letter routing.
//!
//! The mock broker keeps only about 5 MiB per partition and silently drops
//! older messages, and does not implement transactional offset commits
//! faithfully (NOTES.md), so the demo publishes at the pace the processor
//! consumes, uses `idempotent` delivery (the SQLite watermark keeps the data
//! exactly once), and checks that no message was dropped before it reports.
//!
//! [`run`] is the recipe, one named step at a time; [`generate`] makes the
//! customers and events, `mix` the message mix, `seed` the starting rows,
//! `broker` the embedded broker and the traffic on it, `summary` what the
//! demo prints.

mod broker;
pub mod generate;
mod mix;
mod seed;
mod summary;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::BaseConsumer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::generate::Customer;
use self::summary::{Bar, print_summary, seed_review_reasons};
use crate::config::{self, Config, RawConfig};
use crate::pipeline::{self, Progress};
use crate::sink::{Database, Outcome};
use crate::telemetry;

/// What the demo is asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub events: usize,
    pub db: PathBuf,
    pub seed: u64,
    pub metrics: Option<std::net::SocketAddr>,
    /// Draw a progress bar (a terminal) or print plain lines.
    pub progress_bar: bool,
    /// `--review`: afterwards, the review console on this address with the
    /// decision applier, on the embedded broker, until Ctrl-C.
    pub review: Option<std::net::SocketAddr>,
}

/// What the demo did, for tests and the summary.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    pub published: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub review_messages: u64,
    pub dlq_messages: u64,
    pub elapsed: Duration,
}

pub async fn run(opts: DemoOptions, out: &mut impl Write) -> anyhow::Result<DemoSummary> {
    let started = Instant::now();
    remove_previous_database(&opts.db)?;
    // The embedded broker. Not Send: it stays on this task until the end.
    let mock = broker::Embedded::start()?;
    let bootstrap = mock.bootstrap_servers();

    let cfg_path = opts.db.with_extension("toml");
    let cfg = demo_config(&bootstrap, &opts, &cfg_path)?;
    writeln!(
        out,
        "govsync demo: embedded Kafka broker on {bootstrap}, SQLite database {}",
        opts.db.display()
    )?;

    let (db, pool) = open_database(&cfg, &opts).await?;
    let (customers, conflicted) = seed_customers(out, &pool, &opts).await?;

    let shutdown = CancellationToken::new();
    let progress = Arc::new(Progress::default());
    if let Some(addr) = cfg.metrics_listen {
        serve_metrics(out, addr, &progress, &db, &shutdown).await?;
    }
    let cfg = Arc::new(cfg);
    let processor = tokio::spawn(pipeline::run(
        cfg.clone(),
        db.clone(),
        shutdown.clone(),
        progress.clone(),
    ));

    // Publish at the pace the processor consumes.
    let producer = broker::producer(&bootstrap)?;
    let total = (6 + opts.events) as u64;
    let bar = Bar::new(total, opts.progress_bar);
    let published_per_partition = broker::publish(
        &producer, &customers, conflicted, opts.seed, total, &progress, &bar,
    )
    .await?;
    wait_for_outcomes(&processor, &progress, total, &bar).await?;
    bar.finish(&progress);
    let elapsed = started.elapsed();
    // Stopping lets the last batches finish their Kafka commits: the side
    // outputs are all on their topics before they are counted.
    stop_processor(&shutdown, processor).await?;

    let base = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .clone();
    let checker: BaseConsumer = base.create()?;
    broker::check_nothing_dropped(&checker, &progress, &published_per_partition, total)?;
    let review = broker::read_values(&base, broker::REVIEW)?;
    let review_messages = review.len() as u64;
    let dlq_messages = broker::read_values(&base, broker::DLQ)?.len() as u64;
    let seed_reviews = seed_review_reasons(&review);
    drop(checker);
    drop(producer);

    let mut summary = DemoSummary {
        published: total,
        review_messages,
        dlq_messages,
        elapsed,
        ..Default::default()
    };
    for o in Outcome::ALL {
        summary
            .outcomes
            .insert(o.as_str().to_string(), progress.count(o));
    }
    print_summary(
        out,
        &summary,
        &progress,
        &pool,
        &opts,
        &cfg_path,
        &seed_reviews,
    )
    .await?;
    if let Some(listen) = opts.review {
        review_session(out, &cfg, &db, &opts, listen).await?;
    }
    pool.close().await;
    db.close().await;
    drop(mock);
    Ok(summary)
}

/// `--review`: the review console and the decision applier on the demo's
/// broker and database until Ctrl-C, with a one-off reviewer `demo` whose
/// password is printed (its argon2 hash is the reviewers file).
async fn review_session(
    out: &mut impl Write,
    cfg: &Arc<Config>,
    db: &Arc<dyn Database>,
    opts: &DemoOptions,
    listen: std::net::SocketAddr,
) -> anyhow::Result<()> {
    use crate::ops::console::auth;
    let password = auth::token()[..16].to_string();
    let hash = auth::hash_password(&password).map_err(anyhow::Error::msg)?;
    let reviewers = opts.db.with_extension("reviewers");
    std::fs::write(&reviewers, format!("demo:{hash}\n"))
        .with_context(|| format!("writing {}", reviewers.display()))?;
    let mut console_cfg = (**cfg).clone();
    console_cfg.review.reviewers_file = Some(reviewers.clone());
    let console_cfg = Arc::new(console_cfg);
    let open = db.review_items(Some("open")).await?.len();
    writeln!(out)?;
    writeln!(
        out,
        "== review console: http://{listen}/  sign in as demo / {password}  ({open} open items)"
    )?;
    writeln!(
        out,
        "   decisions are applied to {} by the demo's applier; Ctrl-C stops (the reviewer file {} \
         holds only the password's hash)",
        opts.db.display(),
        reviewers.display()
    )?;
    out.flush()?;
    let stop = CancellationToken::new();
    let applier = tokio::spawn(crate::review::applier::run(
        cfg.clone(),
        db.clone(),
        stop.clone(),
    ));
    let served = crate::ops::console::serve(console_cfg, listen).await;
    stop.cancel();
    applier.await??;
    let _ = std::fs::remove_file(&reviewers);
    served
}

/// Removes the previous run's database and its WAL files.
fn remove_previous_database(db: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            std::fs::remove_file(&p)
                .with_context(|| format!("removing the previous demo database {}", p.display()))?;
        }
    }
    Ok(())
}

fn demo_config(bootstrap: &str, opts: &DemoOptions, cfg_path: &Path) -> anyhow::Result<Config> {
    let mut raw = RawConfig::default();
    raw.kafka.bootstrap_servers = bootstrap.to_string();
    raw.kafka.group_id = "govsync-demo".into();
    raw.kafka.instance_id = "demo".into();
    raw.kafka.delivery = "idempotent".into();
    raw.kafka.session_timeout = "6s".into();
    raw.database.url = format!("sqlite://{}", opts.db.display());
    raw.database.pool_size = 2;
    raw.batch.max_wait = "200ms".into();
    raw.metrics.listen = opts.metrics.map(|a| a.to_string()).unwrap_or_default();
    raw.log.format = "text".into();
    raw.log.level = "warn".into();
    // A config file for the follow-up commands (batches, rollback).
    let mut file = raw.clone();
    file.kafka.bootstrap_servers = "127.0.0.1:9092".into();
    let text = format!(
        "# Written by `govsync demo` for follow-up commands, e.g.\n#   govsync batches --config {}\n\
         [kafka]\ngroup_id = \"govsync-demo\"\n\n[database]\nurl = \"{}\"\n",
        cfg_path.display(),
        file.database.url
    );
    std::fs::write(cfg_path, text).with_context(|| format!("writing {}", cfg_path.display()))?;
    Ok(config::check(raw)?)
}

/// The migrated demo database, and a pool on the same file for seeding and
/// the summary's queries.
async fn open_database(
    cfg: &Config,
    opts: &DemoOptions,
) -> anyhow::Result<(Arc<dyn Database>, sqlx::SqlitePool)> {
    let db = crate::sink::connect(&cfg.database)
        .await
        .context("opening the demo database")?;
    db.migrate(true).await?;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", opts.db.display())).await?;
    Ok((db, pool))
}

/// Generates the customers and seeds their rows. Returns them and how many
/// of the first ones will see conflicts.
async fn seed_customers(
    out: &mut impl Write,
    pool: &sqlx::SqlitePool,
    opts: &DemoOptions,
) -> anyhow::Result<(Vec<Customer>, usize)> {
    let customers = generate::customers((opts.events / 5).clamp(1_000, 50_000), 4, opts.seed);
    let conflicted: usize = customers.len() / 50;
    seed::seed_rows(pool, &customers, conflicted).await?;
    writeln!(
        out,
        "seeded {} customer rows (the seed document's 6 plus generated ones)",
        customers.len() + 6
    )?;
    Ok((customers, conflicted))
}

/// Serves /metrics and the health endpoints while the demo runs; an address
/// in use is reported, not fatal.
async fn serve_metrics(
    out: &mut impl Write,
    addr: std::net::SocketAddr,
    progress: &Arc<Progress>,
    db: &Arc<dyn Database>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let handle = telemetry::metrics::install();
    let health = Arc::new(telemetry::http::Health {
        progress: progress.clone(),
        db: db.clone(),
    });
    match telemetry::http::serve(addr, handle, health, shutdown.clone()).await {
        Ok(bound) => writeln!(out, "metrics while it runs: http://{bound}/metrics")?,
        Err(e) => writeln!(
            out,
            "metrics: not served ({e}); use --metrics to pick another address"
        )?,
    }
    Ok(())
}

/// Waits for every record's outcome. No progress for a long while means the
/// embedded broker dropped messages the processor had not read yet.
async fn wait_for_outcomes(
    processor: &JoinHandle<anyhow::Result<()>>,
    progress: &Progress,
    total: u64,
    bar: &Bar,
) -> anyhow::Result<()> {
    let mut last = (progress.done(), Instant::now());
    while progress.done() < total {
        if processor.is_finished() {
            break;
        }
        let done = progress.done();
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            bail!(
                "no progress for 60 s at {done} of {total} records ({} consumed): the embedded broker \
                 probably dropped unread messages; counts would be wrong",
                progress.consumed.load(Ordering::Relaxed)
            );
        }
        bar.update(progress);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Stops the processor and waits up to 60 s for it to finish.
async fn stop_processor(
    shutdown: &CancellationToken,
    processor: JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(60), processor).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e.context("the processor failed")),
        Ok(Err(e)) => bail!("the processor panicked: {e}"),
        Err(_) => bail!("the processor did not stop within 60 s"),
    }
    Ok(())
}

/// Whether stdout is a terminal (for the progress bar).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
