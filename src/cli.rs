//! The command line. `--help` text comes from these doc comments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// govsync writes data-governance results from Kafka back into the business
/// database: validated, in adaptive micro-batches, one database transaction
/// per batch, offsets committed only after the commit.
#[derive(Debug, Parser)]
#[command(name = "govsync", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// Configuration file (TOML). Every key can be overridden by an
    /// environment variable GOVSYNC_<SECTION>__<KEY>.
    #[arg(long, short, env = "GOVSYNC_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the processor: consume governance events and apply them.
    Run(ConfigArg),
    /// The whole job on embedded defaults: an in-process Kafka broker and a
    /// SQLite database, no setup.
    Demo(DemoArgs),
    /// Create govsync's tables (and, with --with-target-table, the dev
    /// customer_profile table); with --topics also the Kafka topics.
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
        /// Also create the business table (development, tests, demo).
        #[arg(long)]
        with_target_table: bool,
        /// Also create the source, review and dead-letter topics if missing.
        #[arg(long)]
        topics: bool,
        /// Partitions of the source topic when --topics creates it.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Check events (JSON lines) exactly as the processor does and print one
    /// verdict per line. Exit status 1 when any line is invalid.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
        /// File of JSON lines, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Publish events (JSON lines) to the source topic, keyed by region_code.
    Produce {
        #[command(flatten)]
        config: ConfigArg,
        /// File of JSON lines, or - for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Inspect and replay the dead-letter topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The review items: records sent to the review topic, open until a
    /// reviewer decides or a newer result supersedes them.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Recent batches from the ledger.
    Batches(BatchesArgs),
    /// Undo a batch: restore the before-images of rows that still hold the
    /// batch's after-images; report rows changed since.
    Rollback {
        #[command(flatten)]
        config: ConfigArg,
        /// The batch id (see `govsync batches`).
        #[arg(long)]
        batch: String,
        /// Report what would be restored without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the configuration and reach Kafka and the database, saying
    /// exactly what fails.
    CheckConfig(ConfigArg),
}

#[derive(Debug, Args)]
pub struct BatchesArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// How many (newest first).
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    #[arg(long)]
    pub partition: Option<i32>,
    /// committed or rolled_back.
    #[arg(long)]
    pub status: Option<String>,
    /// Only batches started at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// One batch by id.
    #[arg(long)]
    pub batch: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Generated events after the seed's six samples.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// SQLite file (created, or reused).
    #[arg(long, default_value = "govsync-demo.db")]
    pub db: PathBuf,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Address of /metrics while the demo runs.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics: String,
    /// After the run, keep the embedded broker up with the review console
    /// and the decision applier, until Ctrl-C: decide the review items in a
    /// browser.
    #[arg(long)]
    pub review: bool,
    /// Address of the review console with --review.
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub review_listen: std::net::SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Items oldest first, personal data masked, with counts by status.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only items of this status (open, superseded, approved, rejected,
        /// corrected).
        #[arg(long)]
        status: Option<String>,
        /// Items shown at most.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One item, its proposal in full. Exit status 1 when there is none.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// The event id of the item.
        event_id: String,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decide an item: publish the decision to kafka.decision_topic (it is
    /// applied by `govsync run`). A correction is checked with the
    /// governance rules first; a refusal publishes nothing (exit status 1).
    /// Prints the decision id.
    Decide {
        #[command(flatten)]
        config: ConfigArg,
        /// The event id of the item.
        event_id: String,
        /// approve, reject or correct.
        verdict: String,
        /// Who decides (recorded with the decision).
        #[arg(long)]
        reviewer: String,
        #[arg(long)]
        comment: Option<String>,
        /// A corrected value, field=value (repeatable; correct only).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
    },
    /// The review console, a web application for reviewers, until Ctrl-C or
    /// SIGTERM. Needs review.reviewers_file or review.trusted_proxy_header.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Address to listen on (default: review.console_listen).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Read a password from standard input and print its argon2 hash (PHC
    /// string) for a `name:hash` line of review.reviewers_file.
    HashPassword,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Counts by error class and data type, with masked samples.
    Inspect {
        #[command(flatten)]
        config: ConfigArg,
        /// Masked sample records per error class.
        #[arg(long, default_value_t = 3)]
        samples: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-publish dead-lettered messages (to the source topic by default).
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Destination topic (default: the source topic).
    #[arg(long)]
    pub to: Option<String>,
    /// Only this error class (e.g. rule, schema, db_rejected).
    #[arg(long)]
    pub error_class: Option<String>,
    #[arg(long)]
    pub data_type: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// Only messages dead-lettered at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only messages dead-lettered before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only messages of this govsync batch.
    #[arg(long)]
    pub batch: Option<String>,
    /// Show what would be replayed; send nothing, commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Messages per second (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Consumer group that records replay progress (resume after an
    /// interruption).
    #[arg(long, default_value = "govsync-dlq-replay")]
    pub group: String,
}
