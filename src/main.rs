use std::io::{BufReader, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use govsync::cli::{Cli, Command, ConfigArg};
use govsync::config::{self, Config};
use govsync::{kafka, ops, pipeline, sink, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("govsync: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("govsync: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn load(arg: &ConfigArg) -> anyhow::Result<Config> {
    Ok(config::load(arg.config.as_deref())?)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    match cli.command {
        Command::Run(arg) => {
            let cfg = Arc::new(load(&arg)?);
            telemetry::init_logging(cfg.log_format, &cfg.log_level);
            run_processor(cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate {
            config,
            with_target_table,
            topics,
            partitions,
        } => {
            let cfg = load(&config)?;
            let db = sink::connect(&cfg.database).await?;
            let done = db.migrate(with_target_table).await?;
            let mut out = stdout.lock();
            writeln!(
                out,
                "database ({}): migrated {}",
                db.kind(),
                done.join(", ")
            )?;
            if topics {
                let created = kafka::ensure_topics(
                    &kafka::tool_config(&cfg.kafka),
                    &[
                        (cfg.kafka.source_topic.as_str(), partitions),
                        (cfg.kafka.review_topic.as_str(), partitions),
                        (cfg.kafka.dlq_topic.as_str(), partitions),
                    ],
                    1,
                )
                .await
                .context("creating topics")?;
                writeln!(
                    out,
                    "kafka: created topics: {}",
                    if created.is_empty() {
                        "none (all exist)".into()
                    } else {
                        created.join(", ")
                    }
                )?;
            }
            db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config, file } => {
            let cfg = load(&config)?;
            let input: Box<dyn std::io::BufRead> = if file == "-" {
                Box::new(BufReader::new(std::io::stdin()))
            } else {
                Box::new(BufReader::new(
                    std::fs::File::open(&file).with_context(|| format!("opening {file}"))?,
                ))
            };
            let s = ops::validate::run(
                input,
                &mut stdout.lock(),
                cfg.kafka.max_message_bytes,
                &cfg.rules,
            )?;
            Ok(if s.invalid > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Produce { config, file } => {
            let cfg = load(&config)?;
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let producer: rdkafka::producer::FutureProducer =
                kafka::tool_config(&cfg.kafka).create()?;
            let events = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| (kafka::region_key(l.as_bytes()), l.as_bytes().to_vec()));
            let n = kafka::publish(&producer, &cfg.kafka.source_topic, events).await?;
            writeln!(
                stdout.lock(),
                "published {n} events to {}",
                cfg.kafka.source_topic
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback {
            config,
            batch,
            dry_run,
        } => {
            let cfg = load(&config)?;
            let db = sink::connect(&cfg.database).await?;
            let report = sink::protocol::rollback(db.as_ref(), &batch, dry_run).await?;
            ops::print_rollback(&report, &mut stdout.lock())?;
            db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Batches {
            config,
            limit,
            partition,
            status,
            since,
            batch,
            json,
        } => {
            let cfg = load(&config)?;
            let db = sink::connect(&cfg.database).await?;
            let since = match since {
                Some(s) => Some(
                    chrono::DateTime::parse_from_rfc3339(&s)
                        .with_context(|| format!("--since {s}: expected an RFC 3339 time like 2024-01-15T10:00:00+08:00"))?
                        .with_timezone(&chrono::Utc),
                ),
                None => None,
            };
            let filter = sink::BatchFilter {
                limit,
                topic: None,
                partition,
                status,
                since,
                batch_id: batch,
            };
            let rows = db.batches(&filter).await?;
            ops::print_batches(&rows, json, &mut stdout.lock())?;
            db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(arg) => {
            let ok = ops::check::run(arg.config.as_deref(), &mut stdout.lock()).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Dlq(cmd) => {
            // Ctrl-C / SIGTERM stop a replay after its current chunk.
            let stop = match &cmd {
                govsync::cli::DlqCommand::Replay(_) => ops::dlq::stop_on_signals(),
                _ => Default::default(),
            };
            // librdkafka blocks: the DLQ tools run off the async workers.
            tokio::task::block_in_place(|| run_dlq(cmd, stop))
        }
        Command::Demo(args) => {
            telemetry::init_logging(config::LogFormat::Text, "warn");
            let metrics = if args.metrics.is_empty() {
                None
            } else {
                Some(
                    args.metrics
                        .parse()
                        .with_context(|| format!("--metrics {}: expected ip:port", args.metrics))?,
                )
            };
            let opts = govsync::demo::DemoOptions {
                events: args.events,
                db: args.db,
                seed: args.seed,
                metrics,
                progress_bar: govsync::demo::stdout_is_terminal(),
            };
            govsync::demo::run(opts, &mut stdout.lock()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `govsync run`: the processor until SIGINT/SIGTERM.
async fn run_processor(cfg: Arc<Config>) -> anyhow::Result<()> {
    let db = sink::connect(&cfg.database)
        .await
        .context("connecting to the database")?;
    db.ping()
        .await
        .context("the database does not answer (check database.url)")?;
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
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        tracing::info!("signal received");
        stop.cancel();
    });
    tracing::info!(
        topic = %cfg.kafka.source_topic, group = %cfg.kafka.group_id, database = db.kind(),
        delivery = ?cfg.kafka.delivery, "govsync starting"
    );
    pipeline::run(cfg, db.clone(), shutdown, progress).await?;
    db.close().await;
    tracing::info!("govsync stopped");
    Ok(())
}

/// `govsync dlq inspect|replay`.
fn run_dlq(
    cmd: govsync::cli::DlqCommand,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<ExitCode> {
    use govsync::cli::DlqCommand;
    use govsync::ops::dlq;
    use std::io::IsTerminal;
    match cmd {
        DlqCommand::Inspect {
            config,
            samples,
            json,
        } => {
            let cfg = load(&config)?;
            dlq::inspect(&cfg, samples, json, &mut std::io::stdout().lock())?;
        }
        DlqCommand::Replay(args) => {
            let cfg = load(&args.config)?;
            let progress = if std::io::stdout().is_terminal() {
                dlq::ProgressMode::Bar
            } else {
                dlq::ProgressMode::Lines
            };
            let mut opts = dlq::ReplayOptions::from_args(&args, progress)?;
            opts.stop = stop;
            // Unlocked: the progress bar draws to standard output too.
            let summary = dlq::replay(&cfg, &opts, &mut std::io::stdout())?;
            if summary.interrupted {
                return Ok(ExitCode::from(130));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
