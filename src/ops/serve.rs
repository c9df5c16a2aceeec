//! `govsync run`: the start-up around [`crate::pipeline::run`]: the
//! database check, the metrics and health endpoint, and the signals that
//! stop it.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::signals;
use crate::config::Config;
use crate::{pipeline, sink, telemetry};

/// `govsync run`: the processor until SIGINT/SIGTERM.
pub async fn run(cfg: Arc<Config>) -> anyhow::Result<()> {
    // Installed first: a SIGTERM during start-up (an orchestrator that
    // changes its mind) stops the processor cleanly instead of killing it.
    let mut term = signals::sigterm();
    let db = sink::connect(&cfg.database)
        .await
        .context("connecting to the database")?;
    db.ping()
        .await
        .context("the database does not answer (check database.url)")?;
    // The target table against database.mapping, before anything is
    // consumed: a missing column stops here, not at the first batch.
    let map = db
        .check_table()
        .await
        .context("checking the target table")?;
    tracing::info!(
        table = %map.table,
        fields = map.mapped().count(),
        version = map.version.as_deref().unwrap_or("(govsync_row_state)"),
        "target table checked against database.mapping"
    );
    let shutdown = CancellationToken::new();
    let progress = Arc::new(pipeline::Progress::default());
    if let Some(addr) = cfg.metrics_listen {
        let handle = telemetry::metrics::install();
        let health = Arc::new(telemetry::http::Health {
            progress: progress.clone(),
            db: db.clone(),
        });
        let bound = telemetry::http::serve(addr, handle, health, shutdown.clone())
            .await
            .with_context(|| format!("binding metrics.listen {addr}"))?;
        tracing::info!(%bound, "metrics on /metrics, health on /healthz and /readyz");
    }
    // An outage with no success to end it (no traffic) ends when nothing
    // has failed for a while.
    tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            telemetry::outage::KAFKA.tick();
            telemetry::outage::DATABASE.tick();
        }
    });
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signals::interrupt(&mut term).await;
        tracing::info!("signal received");
        stop.cancel();
    });
    tracing::info!(
        topic = %cfg.kafka.source_topic, group = %cfg.kafka.group_id, database = db.kind(),
        delivery = ?cfg.kafka.delivery, "govsync starting"
    );
    warn_insecure_tls(&cfg);
    let applier = cfg.review.apply_decisions.then(|| {
        let (cfg, db, stop) = (cfg.clone(), db.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::review::applier::run(cfg, db, stop).await {
                tracing::error!(error = %e, "the review decision applier could not start");
            }
        })
    });
    let result = pipeline::run(cfg, db.clone(), shutdown.clone(), progress).await;
    // The applier stops with the pipeline (it has nothing in flight that
    // its watermark does not cover).
    shutdown.cancel();
    if let Some(a) = applier
        && let Err(e) = a.await
    {
        tracing::error!(error = %e, "the review decision applier panicked");
    }
    result?;
    db.close().await;
    tracing::info!("govsync stopped");
    Ok(())
}

/// The TLS verification an operator turned off, said once at startup.
pub fn warn_insecure_tls(cfg: &Config) {
    if cfg.kafka.insecure_tls {
        tracing::warn!(
            "kafka.allow_insecure_tls: the broker's certificate or host name is NOT verified \
             (kafka.client turns it off); anyone between govsync and the broker can read and \
             change the data"
        );
    }
    if cfg.database.insecure_tls {
        tracing::warn!(
            "database.allow_insecure_tls: the database server's certificate is NOT verified \
             (sslmode in database.url); anyone between govsync and the database can read and \
             change the data"
        );
    }
}
