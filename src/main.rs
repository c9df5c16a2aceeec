//! The `govsync` binary: parses the command line, starts the runtime,
//! dispatches to [`govsync::ops`] (or the demo) and turns the result into
//! an exit status, printing the error chain on failure.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use govsync::cli::{Cli, Command, ConfigArg, DlqCommand, ReviewCommand};
use govsync::config::{self, Config};
use govsync::{ops, telemetry};

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

/// Exit status 1 when a command found something wrong (invalid events, a
/// failed check).
fn failed_if(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    match cli.command {
        Command::Run(arg) => {
            let cfg = Arc::new(load(&arg)?);
            telemetry::init_logging(cfg.log_format, &cfg.log_level);
            ops::serve::run(cfg).await?;
        }
        Command::Migrate {
            config,
            with_target_table,
            topics,
            partitions,
        } => {
            let cfg = load(&config)?;
            let out = &mut stdout.lock();
            ops::admin::migrate(&cfg, with_target_table, topics, partitions, out).await?;
        }
        Command::Validate { config, file } => {
            let cfg = load(&config)?;
            let s = ops::validate::run_file(&cfg, &file, &mut stdout.lock())?;
            return Ok(failed_if(s.invalid > 0));
        }
        Command::Produce { config, file } => {
            let cfg = load(&config)?;
            ops::admin::produce(&cfg, &file, &mut stdout.lock()).await?;
        }
        Command::Rollback {
            config,
            batch,
            dry_run,
        } => {
            let cfg = load(&config)?;
            ops::admin::rollback(&cfg, &batch, dry_run, &mut stdout.lock()).await?;
        }
        Command::Batches(args) => {
            let cfg = load(&args.config)?;
            ops::admin::batches(&cfg, &args, &mut stdout.lock()).await?;
        }
        Command::Review(ReviewCommand::List {
            config,
            status,
            limit,
            json,
        }) => {
            let cfg = load(&config)?;
            ops::review::list(&cfg, status.as_deref(), limit, json, &mut stdout.lock()).await?;
        }
        Command::Review(ReviewCommand::Show {
            config,
            event_id,
            json,
        }) => {
            let cfg = load(&config)?;
            let found = ops::review::show(&cfg, &event_id, json, &mut stdout.lock()).await?;
            return Ok(failed_if(!found));
        }
        Command::Review(ReviewCommand::Decide {
            config,
            event_id,
            verdict,
            reviewer,
            comment,
            set,
        }) => {
            let cfg = load(&config)?;
            let args = ops::review::DecideArgs {
                event_id: &event_id,
                verdict: &verdict,
                reviewer: &reviewer,
                comment,
                set: &set,
            };
            let published = ops::review::decide(&cfg, args, &mut stdout.lock()).await?;
            return Ok(failed_if(!published));
        }
        Command::Review(ReviewCommand::Serve { config, listen }) => {
            let cfg = Arc::new(load(&config)?);
            telemetry::init_logging(cfg.log_format, &cfg.log_level);
            let listen = listen.unwrap_or(cfg.review.console_listen);
            ops::console::serve(cfg, listen).await?;
        }
        Command::Review(ReviewCommand::HashPassword) => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            ops::review::hash_password(password, &mut stdout.lock())?;
        }
        Command::CheckConfig(arg) => {
            let ok = ops::check::run(arg.config.as_deref(), &mut stdout.lock()).await?;
            return Ok(failed_if(!ok));
        }
        // librdkafka blocks: the DLQ tools run off the async workers.
        Command::Dlq(DlqCommand::Inspect {
            config,
            samples,
            json,
        }) => {
            tokio::task::block_in_place(|| {
                let cfg = load(&config)?;
                ops::dlq::inspect(&cfg, samples, json, &mut stdout.lock())
            })?;
        }
        Command::Dlq(DlqCommand::Replay(args)) => {
            // Ctrl-C / SIGTERM stop a replay after its current chunk.
            let stop = ops::dlq::stop_on_signals();
            let summary = tokio::task::block_in_place(|| {
                let cfg = load(&args.config)?;
                ops::dlq::replay_command(&cfg, &args, stop)
            })?;
            if summary.interrupted {
                return Ok(ExitCode::from(130));
            }
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
                review: args.review.then_some(args.review_listen),
            };
            govsync::demo::run(opts, &mut stdout.lock()).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
