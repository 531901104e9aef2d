//! The command line's arguments: every subcommand and flag, with its environment fallback.
//! Values are checked here (currency codes, ranges) so the commands get typed options.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use fxpipe::ingest;
use fxpipe::jobs::normalize::{YearMonth, MAX_RATE_AGE_DAYS};
use fxpipe::storage::{Addressing, S3Options};
use fxpipe::transactions::fields::DecimalSeparator;

use super::catalog;
use super::output;
use super::print::{self, Format, MaxRows};

pub(crate) const EXAMPLES: &str = "\
Examples:
  fxpipe quickstart                                   # sample data end to end into ./lake
  fxpipe gen rates --from 2017-01-01 --to 2017-12-31 --out rates/
  fxpipe ingest --source file://rates --from 2017-01-01 --to 2017-12-31
  fxpipe gen transactions --rows 100000 --out txns.csv --dirty 0.01
  fxpipe load txns.csv
  fxpipe normalize --max-rate-age 3
  fxpipe report creditworthiness
  fxpipe sql \"SELECT reason, count(*) FROM rejects GROUP BY reason\" --format csv";

/// Multi-currency bank transactions to one base currency, exactly.
#[derive(Debug, Parser)]
#[command(name = "fxpipe", version, about, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// The lake: a local folder (commands that write create it; sql, report and vacuum need
    /// it) or s3://bucket/prefix (the bucket must exist).
    #[arg(long, global = true, env = "FXPIPE_LAKE", default_value = "./lake")]
    pub(crate) lake: String,

    #[command(flatten)]
    pub(crate) s3: S3Args,

    /// Run the job's queries on a Ballista cluster (`df://HOST:PORT`, the scheduler):
    /// load, normalize, sql and report. Other commands run in this process.
    #[arg(
        long,
        global = true,
        env = "FXPIPE_CLUSTER",
        value_name = "df://HOST:PORT"
    )]
    pub(crate) cluster: Option<String>,

    /// Mutual TLS with the cluster: DIR holds ca.pem, cert.pem and key.pem (`fxpipe cluster
    /// certs` makes them). Needed when the cluster's nodes run with --tls-dir.
    #[arg(long, global = true, env = "FXPIPE_TLS_DIR", value_name = "DIR")]
    pub(crate) tls_dir: Option<std::path::PathBuf>,

    /// Partitions of each stage on the cluster (each is one task). Default: the cores of the
    /// executors registered when the job starts, as the scheduler reports them (16 when it
    /// cannot say).
    #[arg(
        long,
        global = true,
        env = "FXPIPE_CLUSTER_PARTITIONS",
        value_name = "N"
    )]
    pub(crate) cluster_partitions: Option<std::num::NonZeroUsize>,

    /// Currency every amount is converted to (any ISO 4217 code the rates carry).
    #[arg(long, global = true, env = "FXPIPE_BASE_CURRENCY", default_value = "SGD", value_parser = currency_code)]
    pub(crate) base_currency: String,

    /// No progress bars: log lines instead, as when standard error is not a terminal.
    #[arg(short, long, global = true, env = "FXPIPE_QUIET")]
    pub(crate) quiet: bool,

    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// How log lines on standard error look: text, or json (one JSON object per line, for
    /// a log collector).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FXPIPE_LOG_FORMAT",
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The `--log-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// How S3 is reached. Credentials and region always come from the standard AWS chain
/// (environment, AWS_PROFILE and ~/.aws files, SSO, web identity, ECS, instance role), never
/// from the command line.
#[derive(Debug, Args)]
pub(crate) struct S3Args {
    /// An S3-compatible endpoint (MinIO, Ceph, moto), e.g. http://127.0.0.1:9000; default:
    /// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or the profile's endpoint_url, else AWS S3.
    /// Plain HTTP only when the endpoint says http://.
    #[arg(long, global = true, env = "FXPIPE_S3_ENDPOINT", value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// Bucket addressing: auto (virtual-hosted on AWS, path-style on a custom endpoint),
    /// path or virtual.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FXPIPE_S3_ADDRESSING",
        default_value = "auto"
    )]
    pub(crate) s3_addressing: Addressing,
    /// Seconds one S3 request may take before it is abandoned (and retried if idempotent).
    #[arg(
        long,
        global = true,
        env = "FXPIPE_S3_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub(crate) s3_timeout: u64,
    /// Retries of a failed S3 request (503 SlowDown, 5xx, 429, dropped connections), with
    /// exponential backoff from 100 ms to 15 s.
    #[arg(
        long,
        global = true,
        env = "FXPIPE_S3_RETRIES",
        default_value_t = 10,
        value_name = "N"
    )]
    pub(crate) s3_retries: usize,
    /// Seconds after a request's first attempt when no further retry starts.
    #[arg(
        long,
        global = true,
        env = "FXPIPE_S3_RETRY_TIMEOUT",
        default_value_t = 120,
        value_name = "SECONDS"
    )]
    pub(crate) s3_retry_timeout: u64,
}

impl S3Args {
    pub(crate) fn options(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            addressing: self.s3_addressing,
            request_timeout: std::time::Duration::from_secs(self.s3_timeout.max(1)),
            max_retries: self.s3_retries,
            retry_timeout: std::time::Duration::from_secs(self.s3_retry_timeout),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate sample data (rates files, transaction CSV).
    #[command(subcommand)]
    Gen(GenCommand),
    /// Read daily rates from a source into the rates table (failures into rates_errors).
    Ingest(IngestArgs),
    /// Load bank-transaction CSV files into the transactions table (faults into rejects).
    Load(LoadArgs),
    /// Convert transactions to the base currency into the processed table.
    Normalize(NormalizeArgs),
    /// Run SQL over the lake's tables: transactions, rejects, loads, rates, rates_errors, processed.
    Sql(SqlArgs),
    /// Run one of the analytics reports over the processed table.
    Report(ReportArgs),
    /// Delete data files no table version within the retention period needs.
    Vacuum(VacuumArgs),
    /// Compact small data files (e.g. a year of daily rate commits) into larger ones.
    Optimize(OptimizeArgs),
    /// Generate sample data and run the whole pipeline on it, printing every report.
    Quickstart(QuickstartArgs),
    /// The daily job: ingest the missing rate days, load the new exports, normalize what
    /// changed; one report, and a failure names its step (the steps before it stay committed).
    Run(RunArgs),
    /// The lake's tables in Athena or the Glue Data Catalog (no crawler); reads the lake only.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Set up a Ballista cluster: `cluster certs` makes its TLS certificates.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) to stdout.
    Completions(CompletionsArgs),
    /// Check this setup (configuration, lake, AWS, App ID, cluster, orphan files): one line per
    /// check, a hint for each failure, exit status 1 if any failed.
    Doctor(super::doctor::DoctorArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// A CA and, for each host and for the client, a TLS directory (ca.pem, cert.pem, key.pem)
    /// for --tls-dir. Keys are written mode 0600; the CA's key (OUT/ca-key.pem) stays out of
    /// the directories: keep it off the nodes.
    Certs(ClusterCertsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ClusterCertsArgs {
    /// Folder to write into: OUT/<host>/ for each host, OUT/client/, OUT/ca-key.pem.
    #[arg(long, value_name = "OUT")]
    pub(crate) out: std::path::PathBuf,
    /// Host names or IP addresses of the nodes, comma-separated (each certificate is also
    /// valid for localhost and 127.0.0.1).
    #[arg(long, value_delimiter = ',', required = true, value_name = "HOST,...")]
    pub(crate) hosts: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365)]
    pub(crate) days: u32,
    /// Do nothing when OUT already holds a cluster's certificates (OUT/client/cert.pem), so a
    /// setup step can run on every start without replacing the CA the nodes trust.
    #[arg(long)]
    pub(crate) keep_existing: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GenCommand {
    /// A bank-transactions CSV export with real-world quirks (and, with --dirty, faults).
    Transactions(GenTransactionsArgs),
    /// Open-Exchange-Rates-format files DIR/historical/YYYY-MM-DD.json.
    Rates(GenRatesArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GenTransactionsArgs {
    /// Number of data rows.
    #[arg(long, env = "FXPIPE_GEN_ROWS", default_value_t = 10_000)]
    pub(crate) rows: u64,
    /// Output CSV file.
    #[arg(long, env = "FXPIPE_GEN_OUT")]
    pub(crate) out: PathBuf,
    #[arg(long, env = "FXPIPE_GEN_SEED", default_value_t = 42)]
    pub(crate) seed: u64,
    /// Number of accounts the rows are spread over.
    #[arg(long, env = "FXPIPE_GEN_ACCOUNTS", default_value_t = 10)]
    pub(crate) accounts: u32,
    #[arg(long, env = "FXPIPE_GEN_FROM", default_value = "2017-01-01")]
    pub(crate) from: NaiveDate,
    #[arg(long, env = "FXPIPE_GEN_TO", default_value = "2018-12-31")]
    pub(crate) to: NaiveDate,
    /// Fraction of rows (0 to 1) made malformed, of many kinds.
    #[arg(long, env = "FXPIPE_GEN_DIRTY", default_value_t = 0.0)]
    pub(crate) dirty: f64,
}

#[derive(Debug, Args)]
pub(crate) struct GenRatesArgs {
    #[arg(long, env = "FXPIPE_GEN_FROM")]
    pub(crate) from: NaiveDate,
    #[arg(long, env = "FXPIPE_GEN_TO")]
    pub(crate) to: NaiveDate,
    /// Output folder (files go to OUT/historical/).
    #[arg(long, env = "FXPIPE_GEN_OUT")]
    pub(crate) out: PathBuf,
    #[arg(long, env = "FXPIPE_GEN_SEED", default_value_t = 7)]
    pub(crate) seed: u64,
}

#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// Where rates come from: `oxr` (Open Exchange Rates; the App ID from OXR_APP_ID or a
    /// config file, never from the command line), `ecb` (the European Central Bank's
    /// reference rates, no key), or file://DIR (DIR/historical/YYYY-MM-DD.json).
    #[arg(long, env = "FXPIPE_RATE_SOURCE", default_value = "oxr")]
    pub(crate) source: String,
    /// The Open Exchange Rates API root (a proxy's, or a test server's).
    #[arg(long, env = "FXPIPE_OXR_URL", default_value = ingest::oxr::DEFAULT_URL)]
    pub(crate) oxr_url: String,
    /// The ECB document: eurofxref-hist.zip (default), its CSV, eurofxref-daily.xml or
    /// eurofxref-hist.xml, over http(s) or as file:///path to a downloaded copy.
    #[arg(long, env = "FXPIPE_ECB_URL")]
    pub(crate) ecb_url: Option<String>,
    /// A TOML file with `app_id` under `[oxr]` (default: the first fxpipe.toml in the working
    /// directory, $XDG_CONFIG_HOME/fxpipe/ or ~/.config/fxpipe/, /etc/fxpipe/). The
    /// environment (OXR_APP_ID, OPENEXCHANGE_APP_ID) comes first.
    #[arg(long, env = "FXPIPE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// One day: short for --from D --to D.
    #[arg(long, env = "FXPIPE_INGEST_DATE", conflicts_with_all = ["from", "to", "latest", "daemon"])]
    pub(crate) date: Option<NaiveDate>,
    /// First date (YYYY-MM-DD) of a backfill.
    #[arg(long, env = "FXPIPE_INGEST_FROM", conflicts_with_all = ["latest", "daemon"])]
    pub(crate) from: Option<NaiveDate>,
    /// Last date, inclusive (default: today, UTC).
    #[arg(long, env = "FXPIPE_INGEST_TO", requires = "from")]
    pub(crate) to: Option<NaiveDate>,
    /// The most recent rates (Open Exchange Rates' latest.json), stored under their day.
    #[arg(long, conflicts_with = "daemon")]
    pub(crate) latest: bool,
    /// Fetch dates the rates table already holds, too (their rows are replaced).
    #[arg(long)]
    pub(crate) force: bool,
    /// Requests in flight at once.
    #[arg(long, env = "FXPIPE_INGEST_CONCURRENCY", default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Requests started per second, at most (mind your plan's quota).
    #[arg(long, env = "FXPIPE_INGEST_RPS", default_value_t = 10.0)]
    pub(crate) requests_per_second: f64,
    /// Seconds before a request is given up (and retried).
    #[arg(long, env = "FXPIPE_HTTP_TIMEOUT", default_value_t = 30)]
    pub(crate) timeout: u64,
    /// Retries of a request after a 429, a 5xx, a connection error or a timeout.
    #[arg(long, env = "FXPIPE_INGEST_RETRIES", default_value_t = 4)]
    pub(crate) retries: usize,
    /// Days per commit of a backfill (a commit also happens every --batch-seconds). Default:
    /// 30 for Open Exchange Rates; files and the ECB are bounded by time only.
    #[arg(long, env = "FXPIPE_INGEST_BATCH_DAYS")]
    pub(crate) batch_days: Option<usize>,
    #[arg(long, env = "FXPIPE_INGEST_BATCH_SECONDS", default_value_t = 10)]
    pub(crate) batch_seconds: u64,
    /// Run as a sidecar: catch up now, then once per --schedule, until SIGTERM or SIGINT.
    #[arg(long, env = "FXPIPE_INGEST_DAEMON")]
    pub(crate) daemon: bool,
    /// When the sidecar runs: a cron expression, five fields or six with seconds first.
    #[arg(long, env = "FXPIPE_INGEST_SCHEDULE", default_value = "0 8 * * *")]
    pub(crate) schedule: String,
    /// The time zone of --schedule (an IANA name such as Asia/Singapore).
    #[arg(long, env = "FXPIPE_INGEST_TZ", default_value = "UTC")]
    pub(crate) tz: chrono_tz::Tz,
    /// How many complete days back each sidecar run covers (missing ones are fetched).
    #[arg(long, env = "FXPIPE_INGEST_CATCH_UP_DAYS", default_value_t = 7)]
    pub(crate) catch_up_days: u32,
    /// Serve /healthz and Prometheus /metrics on this address (e.g. 127.0.0.1:9108).
    #[arg(long, env = "FXPIPE_INGEST_HTTP")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// /healthz fails when the newest stored day is older than this many days.
    #[arg(long, env = "FXPIPE_INGEST_STALE_AFTER_DAYS", default_value_t = 2)]
    pub(crate) stale_after_days: i64,
}

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// CSV files to load: paths, file:// or s3://bucket/key URLs, or quoted globs of them
    /// ('s3://bank/exports/2024-*.csv').
    #[arg(required = true)]
    pub(crate) files: Vec<String>,
    /// The character before an amount's decimals: `.`, `,` (European: 1.234,56), or auto
    /// (`,` in files delimited by `;`, `.` otherwise). Groupings that the separator in force
    /// would have to guess at, such as 12,50 with `.`, are rejected as bad_amount.
    #[arg(long, env = "FXPIPE_DECIMAL_SEPARATOR", default_value = "auto")]
    pub(crate) decimal_separator: DecimalSeparator,
    /// Read and hash every file, even one whose size and modification time (ETag on S3) are
    /// those recorded when it was loaded.
    #[arg(long, env = "FXPIPE_LOAD_VERIFY")]
    pub(crate) verify: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NormalizeArgs {
    #[command(flatten)]
    pub(crate) conversion: ConversionArgs,
    /// Recompute only the months whose transactions or rates changed since the last normalize
    /// (from the Delta logs); nothing, and no commit, when nothing changed.
    #[arg(long, env = "FXPIPE_NORMALIZE_CHANGED", conflicts_with_all = ["from", "to"])]
    pub(crate) changed: bool,
    /// First month to recompute (YYYY-MM); with --to, only those partitions are replaced.
    #[arg(long, env = "FXPIPE_NORMALIZE_FROM", requires = "to")]
    pub(crate) from: Option<YearMonth>,
    /// Last month to recompute (YYYY-MM), inclusive.
    #[arg(long, env = "FXPIPE_NORMALIZE_TO", requires = "from")]
    pub(crate) to: Option<YearMonth>,
    /// Name the converted columns after the base currency (withdrawal_eur_amt) instead of the
    /// Athena-compatible withdrawal_sgd_amt.
    #[arg(long, env = "FXPIPE_COLUMNS_FOLLOW_BASE")]
    pub(crate) columns_follow_base: bool,
    /// On a cluster, whether rows are shuffled by month before they are written (one task, so
    /// fewer files, per month): auto does so only above 8 partitions per stage.
    #[arg(long, value_enum, env = "FXPIPE_WRITE_SHUFFLE", default_value = "auto")]
    pub(crate) write_shuffle: WriteShuffleArg,
}

/// `--write-shuffle` (see `fxpipe::engine::write::WriteShuffle`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum WriteShuffleArg {
    Auto,
    Always,
    Never,
}

impl From<WriteShuffleArg> for fxpipe::engine::write::WriteShuffle {
    fn from(arg: WriteShuffleArg) -> Self {
        match arg {
            WriteShuffleArg::Auto => Self::Auto,
            WriteShuffleArg::Always => Self::Always,
            WriteShuffleArg::Never => Self::Never,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// The query. Without one (and without -f), statements piped to standard input run, or
    /// on a terminal an interactive shell opens.
    #[arg(conflicts_with = "file")]
    pub(crate) query: Option<String>,
    /// A file of SQL statements separated by `;` (each result is printed).
    #[arg(short, long, env = "FXPIPE_SQL_FILE")]
    pub(crate) file: Option<PathBuf>,
    #[arg(long, value_enum, env = "FXPIPE_FORMAT", default_value = "table")]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) max_rows: MaxRowsArg,
    #[command(flatten)]
    pub(crate) output: OutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// account-summary, creditworthiness, deposits-by-currency, currency-exposure,
    /// monthly-flows or balance-history (--list says what each computes).
    #[arg(required_unless_present_any = ["list", "html"])]
    pub(crate) name: Option<String>,
    #[arg(long, value_enum, env = "FXPIPE_FORMAT", default_value = "table")]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) max_rows: MaxRowsArg,
    #[command(flatten)]
    pub(crate) output: OutputArg,
    #[command(flatten)]
    pub(crate) extras: super::report_cmd::ReportExtras,
}

#[derive(Debug, Args)]
pub(crate) struct OutputArg {
    /// Write the result to FILE instead of printing it, in the format its extension names:
    /// .csv, .jsonl/.ndjson/.json (JSON lines) or .parquet (--format and --max-rows do not
    /// apply). FILE is replaced only once the whole result is written. No environment
    /// fallback: a stray variable must not send every query's rows to one file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

impl OutputArg {
    /// The format `-o` asks for, checked before any query runs.
    pub(crate) fn format(&self) -> anyhow::Result<Option<(PathBuf, output::FileFormat)>> {
        self.output
            .as_ref()
            .map(|file| Ok((file.clone(), output::FileFormat::of(file)?)))
            .transpose()
    }
}

#[derive(Debug, Args)]
pub(crate) struct MaxRowsArg {
    /// Rows `--format table` shows (the rest are counted, not held); 0 or inf shows all.
    /// csv and json print every row.
    #[arg(long = "max-rows", value_name = "N", env = "FXPIPE_MAX_ROWS", default_value = MaxRows::DEFAULT, value_parser = print::max_rows)]
    pub(crate) value: MaxRows,
}

#[derive(Debug, Args)]
pub(crate) struct VacuumArgs {
    /// Keep files needed by versions newer than this many hours (time travel window).
    #[arg(long, env = "FXPIPE_VACUUM_RETENTION_HOURS", default_value_t = 168)]
    pub(crate) retention_hours: u64,
    /// Only list what would be deleted.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Vacuum even with a retention shorter than the longest recent job (which would delete
    /// the staged files of a job running now, and break its commit).
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct OptimizeArgs {
    /// Size to aim for per data file, in MiB.
    #[arg(long, env = "FXPIPE_OPTIMIZE_TARGET_MIB", default_value_t = 128)]
    pub(crate) target_mib: u64,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Rate days to ingest: by default from the day after the last stored one to yesterday
    /// (UTC; complete days), or as --date / --from / --to say.
    #[command(flatten)]
    pub(crate) ingest: IngestArgs,
    /// No ingest step: the rates come from elsewhere (the ingester sidecar, on EC2).
    #[arg(long, env = "FXPIPE_RUN_SKIP_INGEST")]
    pub(crate) skip_ingest: bool,
    /// Exports to load: paths, s3:// prefixes' globs ('s3://bank/exports/*.csv'); repeatable.
    /// Known files are skipped unread (see `load`). None: no load step.
    #[arg(long = "inputs", env = "FXPIPE_RUN_INPUTS", value_delimiter = ',')]
    pub(crate) inputs: Vec<String>,
    /// Then register the lake's tables in this Glue database (step 4, as `catalog glue`):
    /// needed once per new table, harmless daily. Region and credentials from the AWS chain.
    #[arg(long, env = "FXPIPE_RUN_GLUE_DATABASE", value_name = "DATABASE")]
    pub(crate) glue_database: Option<String>,
    #[arg(long, env = "FXPIPE_DECIMAL_SEPARATOR", default_value = "auto")]
    pub(crate) decimal_separator: DecimalSeparator,
    #[command(flatten)]
    pub(crate) conversion: ConversionArgs,
}

/// How normalize converts and writes (shared by `normalize` and `run`).
#[derive(Debug, Args)]
pub(crate) struct ConversionArgs {
    /// Days back a missing day's rate may come from: 0 (the value date's rate only) to 366.
    #[arg(
        long,
        env = "FXPIPE_MAX_RATE_AGE",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RATE_AGE_DAYS))
    )]
    pub(crate) max_rate_age: u32,
    /// Fail, writing nothing, if any amount has no usable rate.
    #[arg(long, env = "FXPIPE_STRICT")]
    pub(crate) strict: bool,
    /// Months each write task keeps a Parquet file open for; rows of other months wait in
    /// local spill files and are written after. Memory follows this, not the data (an open
    /// file holds up to about 16 MB).
    #[arg(
        long,
        env = "FXPIPE_MAX_OPEN_FILES",
        default_value_t = fxpipe::engine::partition_files::DEFAULT_MAX_OPEN_FILES as u32,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub(crate) max_open_files: u32,
}

#[derive(Debug, Args)]
pub(crate) struct QuickstartArgs {
    /// Transactions to generate.
    #[arg(long, env = "FXPIPE_QUICKSTART_ROWS", default_value_t = 10_000)]
    pub(crate) rows: u64,
    /// Folder for the generated inputs (CSV and rates files).
    #[arg(long, env = "FXPIPE_QUICKSTART_INPUTS", default_value = "./sample")]
    pub(crate) inputs: PathBuf,
}

pub(crate) fn currency_code(text: &str) -> Result<String, String> {
    let code = text.trim().to_ascii_uppercase();
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(code)
    } else {
        Err(format!("{text:?} is not a three-letter ISO currency code"))
    }
}
