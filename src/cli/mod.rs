//! Command line: parse, run one job, print its report, save it beside the lake.

/// `println!` that returns the write's error instead of panicking on a closed stdout.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(print::stdout(), $($arg)*)
    };
}

mod catalog;
mod errors;
mod output;
mod print;
mod readonly;
mod report_cmd;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use fxpipe::engine::Engine;
use fxpipe::gen;
use fxpipe::ingest;
use fxpipe::jobs::load::LoadOptions;
use fxpipe::jobs::normalize::{NormalizeOptions, YearMonth, MAX_RATE_AGE_DAYS};
use fxpipe::jobs::{analytics, load, normalize};
use fxpipe::report;
use fxpipe::storage::inputs::{self, Input};
use fxpipe::storage::{delta, Addressing, Lake, S3Options, Table};
use fxpipe::transactions::fields::DecimalSeparator;
use print::{Format, MaxRows};

const EXAMPLES: &str = "\
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
struct Cli {
    /// The lake: a local folder (commands that write create it; sql, report and vacuum need
    /// it) or s3://bucket/prefix (the bucket must exist).
    #[arg(long, global = true, env = "FXPIPE_LAKE", default_value = "./lake")]
    lake: String,

    #[command(flatten)]
    s3: S3Args,

    /// Run the job's queries on a Ballista cluster (`df://HOST:PORT`, the scheduler):
    /// load, normalize, sql and report. Other commands run in this process.
    #[arg(
        long,
        global = true,
        env = "FXPIPE_CLUSTER",
        value_name = "df://HOST:PORT"
    )]
    cluster: Option<String>,

    /// Currency every amount is converted to (any ISO 4217 code the rates carry).
    #[arg(long, global = true, env = "FXPIPE_BASE_CURRENCY", default_value = "SGD", value_parser = currency_code)]
    base_currency: String,

    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// How log lines on standard error look: text, or json (one JSON object per line, for
    /// a log collector).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FXPIPE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// The `--log-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How S3 is reached. Credentials and region always come from the standard AWS chain
/// (environment, AWS_PROFILE and ~/.aws files, SSO, web identity, ECS, instance role), never
/// from the command line.
#[derive(Debug, Args)]
struct S3Args {
    /// An S3-compatible endpoint (MinIO, Ceph, moto), e.g. http://127.0.0.1:9000; default:
    /// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or the profile's endpoint_url, else AWS S3.
    /// Plain HTTP only when the endpoint says http://.
    #[arg(long, global = true, env = "FXPIPE_S3_ENDPOINT", value_name = "URL")]
    s3_endpoint: Option<String>,
    /// Bucket addressing: auto (virtual-hosted on AWS, path-style on a custom endpoint),
    /// path or virtual.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FXPIPE_S3_ADDRESSING",
        default_value = "auto"
    )]
    s3_addressing: Addressing,
    /// Seconds one S3 request may take before it is abandoned (and retried if idempotent).
    #[arg(
        long,
        global = true,
        env = "FXPIPE_S3_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    s3_timeout: u64,
    /// Retries of a failed S3 request (503 SlowDown, 5xx, 429, dropped connections), with
    /// exponential backoff from 100 ms to 15 s.
    #[arg(
        long,
        global = true,
        env = "FXPIPE_S3_RETRIES",
        default_value_t = 10,
        value_name = "N"
    )]
    s3_retries: usize,
    /// Seconds after a request's first attempt when no further retry starts.
    #[arg(
        long,
        global = true,
        env = "FXPIPE_S3_RETRY_TIMEOUT",
        default_value_t = 120,
        value_name = "SECONDS"
    )]
    s3_retry_timeout: u64,
}

impl S3Args {
    fn options(&self) -> S3Options {
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
enum Command {
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
    /// The lake's tables in Athena or the Glue Data Catalog (no crawler); reads the lake only.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) to stdout.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
enum GenCommand {
    /// A bank-transactions CSV export with real-world quirks (and, with --dirty, faults).
    Transactions(GenTransactionsArgs),
    /// Open-Exchange-Rates-format files DIR/historical/YYYY-MM-DD.json.
    Rates(GenRatesArgs),
}

#[derive(Debug, Args)]
struct GenTransactionsArgs {
    /// Number of data rows.
    #[arg(long, env = "FXPIPE_GEN_ROWS", default_value_t = 10_000)]
    rows: u64,
    /// Output CSV file.
    #[arg(long, env = "FXPIPE_GEN_OUT")]
    out: PathBuf,
    #[arg(long, env = "FXPIPE_GEN_SEED", default_value_t = 42)]
    seed: u64,
    /// Number of accounts the rows are spread over.
    #[arg(long, env = "FXPIPE_GEN_ACCOUNTS", default_value_t = 10)]
    accounts: u32,
    #[arg(long, env = "FXPIPE_GEN_FROM", default_value = "2017-01-01")]
    from: NaiveDate,
    #[arg(long, env = "FXPIPE_GEN_TO", default_value = "2018-12-31")]
    to: NaiveDate,
    /// Fraction of rows (0 to 1) made malformed, of many kinds.
    #[arg(long, env = "FXPIPE_GEN_DIRTY", default_value_t = 0.0)]
    dirty: f64,
}

#[derive(Debug, Args)]
struct GenRatesArgs {
    #[arg(long, env = "FXPIPE_GEN_FROM")]
    from: NaiveDate,
    #[arg(long, env = "FXPIPE_GEN_TO")]
    to: NaiveDate,
    /// Output folder (files go to OUT/historical/).
    #[arg(long, env = "FXPIPE_GEN_OUT")]
    out: PathBuf,
    #[arg(long, env = "FXPIPE_GEN_SEED", default_value_t = 7)]
    seed: u64,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// Where rates come from: `oxr` (Open Exchange Rates; the App ID from OXR_APP_ID or a
    /// config file, never from the command line), `ecb` (the European Central Bank's
    /// reference rates, no key), or file://DIR (DIR/historical/YYYY-MM-DD.json).
    #[arg(long, env = "FXPIPE_RATE_SOURCE", default_value = "oxr")]
    source: String,
    /// The Open Exchange Rates API root (a proxy's, or a test server's).
    #[arg(long, env = "FXPIPE_OXR_URL", default_value = ingest::oxr::DEFAULT_URL)]
    oxr_url: String,
    /// The ECB document: eurofxref-hist.zip (default), its CSV, eurofxref-daily.xml or
    /// eurofxref-hist.xml, over http(s) or as file:///path to a downloaded copy.
    #[arg(long, env = "FXPIPE_ECB_URL")]
    ecb_url: Option<String>,
    /// A TOML file with `app_id` under `[oxr]` (default: the first fxpipe.toml in the working
    /// directory, $XDG_CONFIG_HOME/fxpipe/ or ~/.config/fxpipe/, /etc/fxpipe/). The
    /// environment (OXR_APP_ID, OPENEXCHANGE_APP_ID) comes first.
    #[arg(long, env = "FXPIPE_CONFIG")]
    config: Option<PathBuf>,
    /// One day: short for --from D --to D.
    #[arg(long, env = "FXPIPE_INGEST_DATE", conflicts_with_all = ["from", "to", "latest", "daemon"])]
    date: Option<NaiveDate>,
    /// First date (YYYY-MM-DD) of a backfill.
    #[arg(long, env = "FXPIPE_INGEST_FROM", conflicts_with_all = ["latest", "daemon"])]
    from: Option<NaiveDate>,
    /// Last date, inclusive (default: today, UTC).
    #[arg(long, env = "FXPIPE_INGEST_TO", requires = "from")]
    to: Option<NaiveDate>,
    /// The most recent rates (Open Exchange Rates' latest.json), stored under their day.
    #[arg(long, conflicts_with = "daemon")]
    latest: bool,
    /// Fetch dates the rates table already holds, too (their rows are replaced).
    #[arg(long)]
    force: bool,
    /// Requests in flight at once.
    #[arg(long, env = "FXPIPE_INGEST_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Requests started per second, at most (mind your plan's quota).
    #[arg(long, env = "FXPIPE_INGEST_RPS", default_value_t = 10.0)]
    requests_per_second: f64,
    /// Seconds before a request is given up (and retried).
    #[arg(long, env = "FXPIPE_HTTP_TIMEOUT", default_value_t = 30)]
    timeout: u64,
    /// Retries of a request after a 429, a 5xx, a connection error or a timeout.
    #[arg(long, env = "FXPIPE_INGEST_RETRIES", default_value_t = 4)]
    retries: usize,
    /// Days per commit of a backfill (a commit also happens every --batch-seconds). Default:
    /// 30 for Open Exchange Rates; files and the ECB are bounded by time only.
    #[arg(long, env = "FXPIPE_INGEST_BATCH_DAYS")]
    batch_days: Option<usize>,
    #[arg(long, env = "FXPIPE_INGEST_BATCH_SECONDS", default_value_t = 10)]
    batch_seconds: u64,
    /// No progress bar, only log lines (also when standard error is not a terminal).
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Run as a sidecar: catch up now, then once per --schedule, until SIGTERM or SIGINT.
    #[arg(long, env = "FXPIPE_INGEST_DAEMON")]
    daemon: bool,
    /// When the sidecar runs: a cron expression, five fields or six with seconds first.
    #[arg(long, env = "FXPIPE_INGEST_SCHEDULE", default_value = "0 8 * * *")]
    schedule: String,
    /// The time zone of --schedule (an IANA name such as Asia/Singapore).
    #[arg(long, env = "FXPIPE_INGEST_TZ", default_value = "UTC")]
    tz: chrono_tz::Tz,
    /// How many complete days back each sidecar run covers (missing ones are fetched).
    #[arg(long, env = "FXPIPE_INGEST_CATCH_UP_DAYS", default_value_t = 7)]
    catch_up_days: u32,
    /// Serve /healthz and Prometheus /metrics on this address (e.g. 127.0.0.1:9108).
    #[arg(long, env = "FXPIPE_INGEST_HTTP")]
    http: Option<std::net::SocketAddr>,
    /// /healthz fails when the newest stored day is older than this many days.
    #[arg(long, env = "FXPIPE_INGEST_STALE_AFTER_DAYS", default_value_t = 2)]
    stale_after_days: i64,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// CSV files to load: paths, file:// or s3://bucket/key URLs, or quoted globs of them
    /// ('s3://bank/exports/2024-*.csv').
    #[arg(required = true)]
    files: Vec<String>,
    /// The character before an amount's decimals: `.`, `,` (European: 1.234,56), or auto
    /// (`,` in files delimited by `;`, `.` otherwise). Groupings that the separator in force
    /// would have to guess at, such as 12,50 with `.`, are rejected as bad_amount.
    #[arg(long, env = "FXPIPE_DECIMAL_SEPARATOR", default_value = "auto")]
    decimal_separator: DecimalSeparator,
}

#[derive(Debug, Args)]
struct NormalizeArgs {
    /// Days back a missing day's rate may come from: 0 (the value date's rate only) to 366.
    #[arg(
        long,
        env = "FXPIPE_MAX_RATE_AGE",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RATE_AGE_DAYS))
    )]
    max_rate_age: u32,
    /// Fail, writing nothing, if any amount has no usable rate.
    #[arg(long, env = "FXPIPE_STRICT")]
    strict: bool,
    /// First month to recompute (YYYY-MM); with --to, only those partitions are replaced.
    #[arg(long, env = "FXPIPE_NORMALIZE_FROM", requires = "to")]
    from: Option<YearMonth>,
    /// Last month to recompute (YYYY-MM), inclusive.
    #[arg(long, env = "FXPIPE_NORMALIZE_TO", requires = "from")]
    to: Option<YearMonth>,
    /// Name the converted columns after the base currency (withdrawal_eur_amt) instead of the
    /// Athena-compatible withdrawal_sgd_amt.
    #[arg(long, env = "FXPIPE_COLUMNS_FOLLOW_BASE")]
    columns_follow_base: bool,
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// The query (or use -f).
    #[arg(conflicts_with = "file", required_unless_present = "file")]
    query: Option<String>,
    /// A file of SQL statements separated by `;` (each result is printed).
    #[arg(short, long, env = "FXPIPE_SQL_FILE")]
    file: Option<PathBuf>,
    #[arg(long, value_enum, env = "FXPIPE_FORMAT", default_value = "table")]
    format: Format,
    #[command(flatten)]
    max_rows: MaxRowsArg,
    #[command(flatten)]
    output: OutputArg,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// account-summary, creditworthiness, deposits-by-currency, currency-exposure,
    /// monthly-flows or balance-history (--list says what each computes).
    #[arg(required_unless_present_any = ["list", "html"])]
    name: Option<String>,
    #[arg(long, value_enum, env = "FXPIPE_FORMAT", default_value = "table")]
    format: Format,
    #[command(flatten)]
    max_rows: MaxRowsArg,
    #[command(flatten)]
    output: OutputArg,
    #[command(flatten)]
    extras: report_cmd::ReportExtras,
}

#[derive(Debug, Args)]
struct OutputArg {
    /// Write the result to FILE instead of printing it, in the format its extension names:
    /// .csv, .jsonl/.ndjson/.json (JSON lines) or .parquet (--format and --max-rows do not
    /// apply). FILE is replaced only once the whole result is written. No environment
    /// fallback: a stray variable must not send every query's rows to one file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

impl OutputArg {
    /// The format `-o` asks for, checked before any query runs.
    fn format(&self) -> anyhow::Result<Option<(PathBuf, output::FileFormat)>> {
        self.output
            .as_ref()
            .map(|file| Ok((file.clone(), output::FileFormat::of(file)?)))
            .transpose()
    }
}

/// Prints a result, or writes it to `-o FILE` and says so on stderr.
async fn emit(
    frame: datafusion::dataframe::DataFrame,
    to: Option<&(PathBuf, output::FileFormat)>,
    format: Format,
    max_rows: MaxRows,
    base_currency: &str,
) -> anyhow::Result<()> {
    match to {
        None => {
            print::print(frame, format, max_rows, base_currency).await?;
        }
        Some((file, file_format)) => {
            let rows = output::write(frame, file, *file_format).await?;
            print::stderr_note(
                "INFO",
                &format!(
                    "wrote {rows} rows to {} ({})",
                    file.display(),
                    file_format.name()
                ),
                serde_json::json!({
                    "rows": rows,
                    "path": file.display().to_string(),
                    "format": file_format.name(),
                }),
            );
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
struct MaxRowsArg {
    /// Rows `--format table` shows (the rest are counted, not held); 0 or inf shows all.
    /// csv and json print every row.
    #[arg(long = "max-rows", value_name = "N", env = "FXPIPE_MAX_ROWS", default_value = MaxRows::DEFAULT, value_parser = print::max_rows)]
    value: MaxRows,
}

#[derive(Debug, Args)]
struct VacuumArgs {
    /// Keep files needed by versions newer than this many hours (time travel window).
    #[arg(long, env = "FXPIPE_VACUUM_RETENTION_HOURS", default_value_t = 168)]
    retention_hours: u64,
    /// Only list what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct OptimizeArgs {
    /// Size to aim for per data file, in MiB.
    #[arg(long, env = "FXPIPE_OPTIMIZE_TARGET_MIB", default_value_t = 128)]
    target_mib: u64,
}

#[derive(Debug, Args)]
struct QuickstartArgs {
    /// Transactions to generate.
    #[arg(long, env = "FXPIPE_QUICKSTART_ROWS", default_value_t = 10_000)]
    rows: u64,
    /// Folder for the generated inputs (CSV and rates files).
    #[arg(long, env = "FXPIPE_QUICKSTART_INPUTS", default_value = "./sample")]
    inputs: PathBuf,
}

/// Whether planning failed on a table name the session does not know.
fn is_unknown_table(error: &datafusion::error::DataFusionError) -> bool {
    let text = error.to_string();
    text.contains("table '") && text.contains("' not found")
}

fn currency_code(text: &str) -> Result<String, String> {
    let code = text.trim().to_ascii_uppercase();
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(code)
    } else {
        Err(format!("{text:?} is not a three-letter ISO currency code"))
    }
}

/// Parses arguments, runs the command, maps errors to exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`fxpipe … | head`): stop quietly, as Unix tools
        // killed by SIGPIPE do, and say so with their status, 128 + 13.
        Err(_) if print::stdout_closed() => ExitCode::from(141),
        Err(e) => {
            let message = errors::render(&e);
            if print::json_stderr() {
                print::stderr_note("ERROR", &message, serde_json::json!({}));
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The log filter is the same for both formats: RUST_LOG, else the -v level.
fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        // Cluster job progress is shown unless asked for less (RUST_LOG).
        0 => "warn,fxpipe::engine::progress=info,fxpipe::ingest=info",
        1 => "info,fxpipe=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    match format {
        // Colour codes only on a terminal: logs piped to a file or a collector stay plain text.
        LogFormat::Text => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .try_init();
        }
        // One JSON object per line; the CLI's own stderr lines (the -o summary, the final
        // error) follow suit, so every line a collector reads parses.
        LogFormat::Json => {
            print::set_json_stderr();
            let _ = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Gen(command) = &cli.command {
        return run_gen(command);
    }
    if let Command::Report(args) = &cli.command {
        if args.extras.list {
            return report_cmd::list();
        }
    }
    if let Command::Completions(args) = &cli.command {
        // Into memory first: clap_complete panics on a failed write (a closed pipe).
        let mut script = Vec::new();
        clap_complete::generate(args.shell, &mut Cli::command(), "fxpipe", &mut script);
        print::stdout().write_all(&script)?;
        return Ok(());
    }
    let reads_only = matches!(
        cli.command,
        Command::Sql(_)
            | Command::Report(_)
            | Command::Vacuum(_)
            | Command::Optimize(_)
            | Command::Catalog(_)
    );
    let s3 = cli.s3.options();
    let lake = Lake::open(&cli.lake, !reads_only, &s3).await?;
    let on_cluster = matches!(
        cli.command,
        Command::Load(_) | Command::Normalize(_) | Command::Sql(_) | Command::Report(_)
    );
    let engine = match &cli.cluster {
        Some(address) if on_cluster => Engine::cluster(address).await?,
        Some(address) => {
            tracing::info!(%address, "this command runs in this process, not on the cluster");
            Engine::embedded()
        }
        None => Engine::embedded(),
    };
    engine.attach(&lake);
    let cluster = engine.cluster_address().map(str::to_string);
    let progress = engine.watch_progress();
    let result = run_command(cli, engine, lake, &s3).await;
    if let Some(progress) = progress {
        progress.finish().await;
    }
    match cluster {
        // A job that failed on the cluster says where it ran (the scheduler may be gone).
        Some(address) => {
            result.with_context(|| format!("the job ran on the Ballista cluster at {address}"))
        }
        None => result,
    }
}

/// Runs the command on an engine and lake already set up.
async fn run_command(cli: Cli, engine: Engine, lake: Lake, s3: &S3Options) -> anyhow::Result<()> {
    match cli.command {
        Command::Gen(_) => Ok(()),
        Command::Ingest(args) => run_ingest_command(&engine, &lake, args, &cli.base_currency).await,
        Command::Load(args) => {
            let options = LoadOptions {
                decimal_separator: args.decimal_separator,
            };
            let inputs = inputs::resolve(&args.files, &lake, s3).await?;
            run_load(&engine, &lake, &inputs, &options).await
        }
        Command::Normalize(args) => {
            let options = NormalizeOptions {
                base_currency: cli.base_currency.clone(),
                max_rate_age_days: args.max_rate_age,
                strict: args.strict,
                column_suffix: if args.columns_follow_base {
                    cli.base_currency.to_ascii_lowercase()
                } else {
                    "sgd".to_string()
                },
                months: args.from.zip(args.to),
            };
            run_normalize(&engine, &lake, &options).await
        }
        Command::Sql(args) => run_sql(&engine, &lake, args, &cli.base_currency).await,
        Command::Report(args) => {
            if let Some(file) = &args.extras.html {
                return report_cmd::html(&engine, &lake, file).await;
            }
            let to = args.output.format()?;
            let name = args.name.as_deref().unwrap_or_default();
            let frame =
                analytics::report_with(&engine, &lake, name, &args.extras.options()).await?;
            emit(
                frame,
                to.as_ref(),
                args.format,
                args.max_rows.value,
                &cli.base_currency,
            )
            .await
        }
        Command::Vacuum(args) => {
            for table in Table::ALL {
                let files = delta::vacuum(&lake, table, args.retention_hours, args.dry_run).await?;
                let verb = if args.dry_run {
                    "would delete"
                } else {
                    "deleted"
                };
                outln!("{}: {verb} {} files", table.sql_name(), files.len())?;
                if args.dry_run {
                    for file in &files {
                        outln!("  {file}")?;
                    }
                }
            }
            Ok(())
        }
        Command::Optimize(args) => {
            for table in Table::ALL {
                if !delta::compactable(table) {
                    outln!(
                        "{}: kept as written (one set of files per source file, so a re-load replaces only its own)",
                        table.sql_name()
                    )?;
                    continue;
                }
                let target = args.target_mib.saturating_mul(1 << 20);
                match delta::optimize(&lake, table, engine.session(), target).await? {
                    None => outln!("{}: no table yet", table.sql_name())?,
                    Some(c) => outln!(
                        "{}: {} small files compacted into {} in {} partitions (version {})",
                        table.sql_name(),
                        c.files_removed,
                        c.files_added,
                        c.partitions,
                        c.version
                    )?,
                }
            }
            Ok(())
        }
        Command::Quickstart(args) => quickstart(&engine, &lake, &cli.base_currency, &args).await,
        Command::Catalog(command) => catalog::run(&lake, command).await,
        Command::Completions(_) => Ok(()),
    }
}

fn run_gen(command: &GenCommand) -> anyhow::Result<()> {
    match command {
        GenCommand::Transactions(a) => {
            let spec = gen::transactions::TransactionSpec {
                rows: a.rows,
                seed: a.seed,
                accounts: a.accounts,
                from: a.from,
                to: a.to,
                dirty: a.dirty,
            };
            let rows = gen::transactions::generate(&a.out, &spec)?;
            outln!("wrote {rows} transactions to {}", a.out.display())?;
        }
        GenCommand::Rates(a) => {
            let files = gen::rates::generate(&a.out, a.from, a.to, a.seed)?;
            outln!(
                "wrote {files} daily rate files to {}",
                a.out.join("historical").display()
            )?;
        }
    }
    Ok(())
}

/// The rate source `--source` names.
fn open_source(args: &IngestArgs) -> anyhow::Result<Box<dyn ingest::RateSource>> {
    let client = ingest::oxr::client(std::time::Duration::from_secs(args.timeout.max(1)))?;
    Ok(match args.source.as_str() {
        "oxr" => {
            let key = ingest::key::resolve(args.config.as_deref(), |v| std::env::var(v).ok())?;
            let retry = ingest::oxr::RetryPolicy {
                max_retries: args.retries,
                ..Default::default()
            };
            Box::new(
                ingest::oxr::OxrSource::new(&args.oxr_url, key, client, retry)
                    .map_err(anyhow::Error::msg)?,
            )
        }
        "ecb" => Box::new(ingest::ecb::EcbSource::new(
            args.ecb_url
                .clone()
                .unwrap_or_else(|| ingest::ecb::DEFAULT_URL.to_string()),
            client,
        )),
        other => ingest::source::open(other)?,
    })
}

/// SIGTERM or SIGINT cancels the token: the days in flight finish and are committed. A second
/// signal exits at once.
fn stop_on_signal() -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            if n > 0 {
                std::process::exit(130);
            }
            tracing::warn!(
                "stopping: the days in flight finish and are stored (again to quit now)"
            );
            token.cancel();
        }
    });
    stop
}

async fn run_ingest_command(
    engine: &Engine,
    lake: &Lake,
    args: IngestArgs,
    base: &str,
) -> anyhow::Result<()> {
    let source = open_source(&args)?;
    let today = chrono::Utc::now().date_naive();
    let mut options = ingest::IngestOptions::new(today, today, base);
    options.force = args.force;
    options.concurrency = args.concurrency;
    options.requests_per_second = args.requests_per_second;
    options.batch_days = args.batch_days;
    options.batch_seconds = args.batch_seconds;
    options.progress_bar = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stop = stop_on_signal();
    if args.daemon {
        let daemon = ingest::daemon::DaemonOptions {
            schedule: args.schedule.clone(),
            tz: args.tz,
            catch_up_days: args.catch_up_days,
            http: args.http,
            stale_after_days: args.stale_after_days,
            ingest: ingest::IngestOptions {
                progress_bar: false,
                ..options
            },
        };
        drop(source);
        let open =
            || open_source(&args).map_err(|e| ingest::IngestError::Options(format!("{e:#}")));
        ingest::daemon::run(engine, lake, &open, &daemon, stop).await?;
        return Ok(());
    }
    let report = if args.latest {
        let ingest::source::Latest::Supported(latest) = source.latest().await else {
            anyhow::bail!(
                "--latest needs --source oxr: {} has no latest rates",
                source.describe()
            );
        };
        ingest::ingest_fetched(engine, lake, source.as_ref(), base, latest).await?
    } else {
        let (from, to) = match (args.date, args.from) {
            (Some(date), _) => (date, date),
            (None, Some(from)) => (from, args.to.unwrap_or(today)),
            (None, None) => {
                anyhow::bail!("say which days: --date D, --from D [--to D], --latest, or --daemon")
            }
        };
        options.from = from;
        options.to = to;
        ingest::ingest(engine, lake, source.as_ref(), &options, &stop).await?
    };
    finish_ingest(lake, &report).await
}

/// Saves and prints the report; an error when a date failed or the run stopped early, so the
/// exit status tells a scheduler or script.
async fn finish_ingest(lake: &Lake, report: &report::IngestReport) -> anyhow::Result<()> {
    // Saved before printing: a closed stdout must not lose the job's record.
    let saved = report::save(lake, "ingest", report).await?;
    write!(print::stdout(), "{report}")?;
    outln!("  report: {saved}")?;
    if let Some(why) = &report.stopped {
        anyhow::bail!("ingest stopped early: {why}");
    }
    if !report.failures.is_empty() {
        let dates: Vec<&str> = report.failures.iter().map(|f| f.date.as_str()).collect();
        anyhow::bail!(
            "{} of {} dates failed ({}); they are in the rates_errors table, and the next run fetches them again",
            dates.len(),
            report.dates_requested - report.dates_skipped,
            if dates.len() > 10 {
                format!("{} …", dates[..10].join(", "))
            } else {
                dates.join(", ")
            }
        );
    }
    Ok(())
}

async fn run_load(
    engine: &Engine,
    lake: &Lake,
    files: &[Input],
    options: &LoadOptions,
) -> anyhow::Result<()> {
    let report = load::load(engine, lake, files, options).await?;
    let saved = report::save(lake, "load", &report).await?;
    write!(print::stdout(), "{report}")?;
    outln!("  report: {saved}")?;
    Ok(())
}

async fn run_normalize(
    engine: &Engine,
    lake: &Lake,
    options: &NormalizeOptions,
) -> anyhow::Result<()> {
    let report = normalize::normalize(engine, lake, options).await?;
    let saved = report::save(lake, "normalize", &report).await?;
    write!(print::stdout(), "{report}")?;
    outln!("  output: {}", lake.table_url(Table::Processed))?;
    outln!("  report: {saved}")?;
    Ok(())
}

async fn run_sql(
    engine: &Engine,
    lake: &Lake,
    args: SqlArgs,
    base_currency: &str,
) -> anyhow::Result<()> {
    let to = args.output.format()?;
    let text = match (&args.query, &args.file) {
        (Some(query), _) => query.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?,
        (None, None) => anyhow::bail!("give a query or -f FILE"),
    };
    let registered = engine.register_lake(lake).await?;
    // SHOW TABLES, SHOW COLUMNS and information_schema queries need it; it is read-only.
    engine
        .ctx()
        .sql("SET datafusion.catalog.information_schema = true")
        .await?;
    let statements = datafusion::sql::parser::DFParser::parse_sql(&text)?;
    if to.is_some() && statements.len() > 1 {
        anyhow::bail!(
            "-o writes one result: give one statement, not {}",
            statements.len()
        );
    }
    for statement in statements {
        let state = engine.ctx().state();
        let plan = match state.statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) if is_unknown_table(&e) => {
                let tables = if registered.is_empty() {
                    "none yet (`fxpipe quickstart`, `fxpipe load` or `fxpipe ingest` make some)"
                        .to_string()
                } else {
                    registered.join(", ")
                };
                let hint = errors::Hint(format!("tables in {}: {tables}", lake.display()));
                return Err(anyhow::Error::new(e).context(hint));
            }
            Err(e) => return Err(e.into()),
        };
        readonly::check(&plan)?;
        let frame = engine.ctx().execute_logical_plan(plan).await?;
        emit(
            frame,
            to.as_ref(),
            args.format,
            args.max_rows.value,
            base_currency,
        )
        .await?;
    }
    Ok(())
}

async fn quickstart(
    engine: &Engine,
    lake: &Lake,
    base: &str,
    args: &QuickstartArgs,
) -> anyhow::Result<()> {
    let from = NaiveDate::from_ymd_opt(2017, 1, 1).context("date")?;
    let to = NaiveDate::from_ymd_opt(2018, 12, 31).context("date")?;
    let rates_dir = args.inputs.join("rates");
    let csv = args.inputs.join("transactions.csv");
    outln!("== 1. sample data in {}", args.inputs.display())?;
    let files = gen::rates::generate(&rates_dir, from, to, 7)?;
    outln!(
        "wrote {files} daily rate files to {}",
        rates_dir.join("historical").display()
    )?;
    let spec = gen::transactions::TransactionSpec {
        rows: args.rows,
        seed: 42,
        accounts: 10,
        from,
        to,
        dirty: 0.01,
    };
    gen::transactions::generate(&csv, &spec)?;
    outln!(
        "wrote {} transactions (1% malformed on purpose) to {}",
        args.rows,
        csv.display()
    )?;

    outln!("\n== 2. ingest rates into {}", lake.table_url(Table::Rates))?;
    let source = ingest::source::open(&format!("file://{}", rates_dir.display()))?;
    let options = ingest::IngestOptions {
        progress_bar: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..ingest::IngestOptions::new(from, to, base)
    };
    let report = ingest::ingest(
        engine,
        lake,
        source.as_ref(),
        &options,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    finish_ingest(lake, &report).await?;

    outln!(
        "\n== 3. load transactions into {}",
        lake.table_url(Table::Transactions)
    )?;
    run_load(engine, lake, &[Input::local(csv)], &LoadOptions::default()).await?;

    outln!("\n== 4. normalize to {base}")?;
    let options = NormalizeOptions {
        base_currency: base.to_string(),
        ..Default::default()
    };
    run_normalize(engine, lake, &options).await?;

    for (name, _) in analytics::REPORTS {
        outln!("\n== fxpipe report {name}")?;
        let frame = analytics::report(engine, lake, name).await?;
        print::print(frame, Format::Table, MaxRows::DEFAULT_VALUE, base).await?;
    }
    outln!(
        "\nDone. Query the lake with: fxpipe --lake {} sql \"SELECT * FROM processed LIMIT 10\"",
        lake.display()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap checks the argument definitions (unique names, valid conflicts) only when a
    /// command is parsed; this checks every subcommand at once.
    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }
}
