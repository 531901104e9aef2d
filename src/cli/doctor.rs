//! `fxpipe doctor`: one line per check of this setup, a hint for each failure, and a non-zero
//! exit when any check fails, so it can gate a deployment or a cron job.
//!
//! A check that does not apply to the setup (AWS for a local lake, an App ID when rates come
//! from files or the ECB, a cluster when none is configured) is reported as not used, never as
//! a failure. Every network check is bounded by `--timeout` and they run at once, so doctor
//! answers in seconds whatever is down. No secret is printed: credentials and the App ID are
//! reported by where they were found, never by value (not even a length or a prefix).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory};
use fxpipe::engine::{scheduler_api, EngineError};
use fxpipe::ingest::key::{self, KeyError};
use fxpipe::storage::s3::{self, ChainReport, EndpointSource};
use fxpipe::storage::{delta, probe, Lake, S3Options, Table};
use serde::Serialize;
use serde_json::json;

use super::args::{Cli, LogFormat};
use super::print;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Where rates come from, as for `ingest --source`: oxr needs an App ID; ecb and
    /// file://DIR need none. Unset: an App ID found is checked, none is not a failure.
    #[arg(long, env = "FXPIPE_RATE_SOURCE")]
    source: Option<String>,
    /// The config file that may hold the Open Exchange Rates App ID, as for `ingest --config`.
    #[arg(long, env = "FXPIPE_CONFIG")]
    config: Option<PathBuf>,
    /// Seconds each network step (S3 request, AWS chain, scheduler) may take. The S3 requests
    /// of doctor use this instead of --s3-timeout and --s3-retries.
    #[arg(
        long,
        env = "FXPIPE_DOCTOR_TIMEOUT",
        default_value_t = 5,
        value_name = "SECONDS"
    )]
    timeout: u64,
    /// Files younger than this are not counted as orphans (as `vacuum --retention-hours`).
    #[arg(long, env = "FXPIPE_VACUUM_RETENTION_HOURS", default_value_t = 168)]
    retention_hours: u64,
    /// One JSON object per check on stdout (also with --log-format json).
    #[arg(long)]
    json: bool,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Ok,
    /// Worth knowing, not a failure (orphan files to vacuum).
    Warn,
    Fail,
    /// The check does not apply to this setup.
    NotUsed,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::NotUsed => "--",
        }
    }
}

/// One line of the report; in JSON, `data` holds the check's own fields (versions, counts,
/// where a setting came from).
#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    status: Status,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
    #[serde(flatten)]
    data: serde_json::Map<String, serde_json::Value>,
}

impl Check {
    fn new(check: &'static str, status: Status, message: impl Into<String>) -> Self {
        Self {
            check,
            status,
            message: message.into(),
            hint: None,
            data: serde_json::Map::new(),
        }
    }

    fn fail(check: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(check, Status::Fail, message).hint(hint)
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn data(mut self, value: serde_json::Value) -> Self {
        if let serde_json::Value::Object(map) = value {
            self.data.extend(map);
        }
        self
    }
}

/// Runs every check, prints them, and fails when any failed.
pub async fn run(cli: &Cli, args: &DoctorArgs) -> anyhow::Result<()> {
    let origins = Origins::parse();
    let timeout = Duration::from_secs(args.timeout.max(1));
    let on_s3 = cli.lake.starts_with("s3://") || cli.lake.starts_with("s3a://");
    let mut s3_options = cli.s3.options();
    // Bounded: one retry at most, none after the timeout.
    s3_options.request_timeout = timeout;
    s3_options.max_retries = 1;
    s3_options.retry_timeout = timeout;

    let mut checks = config_checks(cli, args, &origins);
    let (lake, aws, cluster) = tokio::join!(
        check_lake(&cli.lake, &s3_options, timeout, args.retention_hours),
        check_aws(on_s3, &s3_options, timeout, &origins),
        check_cluster(cli.cluster.as_deref(), cli.tls_dir.as_deref(), timeout),
    );
    let (aws_config, aws) = aws;
    checks.extend(aws_config);
    let (lake, orphans) = lake;
    checks.push(lake);
    checks.push(aws);
    checks.push(check_oxr(args));
    checks.push(cluster);
    checks.push(orphans);

    let json = args.json || cli.log_format == LogFormat::Json;
    for check in &checks {
        if json {
            outln!("{}", serde_json::to_string(check)?)?;
        } else {
            outln!("{}", human_line(check))?;
        }
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.check)
        .collect();
    if !failed.is_empty() {
        let mut names = failed.clone();
        names.dedup();
        anyhow::bail!(
            "{} of {} checks failed ({})",
            failed.len(),
            checks.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// `ok    lake        /path …` (status and name in aligned columns), then the hint.
fn human_line(check: &Check) -> String {
    let mut line = format!(
        "{:<6}{:<12}{}",
        check.status.label(),
        check.check,
        check.message
    );
    if let Some(hint) = &check.hint {
        line.push_str(" — hint: ");
        line.push_str(hint);
    }
    line
}

/// Where each option's value came from, by clap's record of the parse.
struct Origins {
    command: clap::Command,
    matches: Option<ArgMatches>,
}

impl Origins {
    /// The command line is parsed again (it already parsed once, so it parses the same): the
    /// derived `Cli` keeps values, not where they came from.
    fn parse() -> Self {
        let command = Cli::command();
        let matches = command
            .clone()
            .try_get_matches_from(std::env::args_os())
            .ok();
        Self { command, matches }
    }

    /// `--lake`, `env FXPIPE_LAKE`, `default` or `unset`, with the JSON `source` word.
    fn of(&self, id: &str) -> (String, &'static str) {
        let matches = self.matches.as_ref();
        let found = matches
            .and_then(|m| m.try_contains_id(id).ok().filter(|&c| c).map(|_| m))
            .or_else(|| {
                matches
                    .and_then(|m| m.subcommand_matches("doctor"))
                    .filter(|m| m.try_contains_id(id).unwrap_or(false))
            });
        let source = found.and_then(|m| m.value_source(id));
        let arg = self
            .command
            .get_arguments()
            .chain(
                self.command
                    .find_subcommand("doctor")
                    .into_iter()
                    .flat_map(|c| c.get_arguments()),
            )
            .find(|a| a.get_id() == id);
        match source {
            Some(ValueSource::CommandLine) => (
                format!("flag --{}", arg.and_then(|a| a.get_long()).unwrap_or(id)),
                "flag",
            ),
            Some(ValueSource::EnvVariable) => (
                format!(
                    "env {}",
                    arg.and_then(|a| a.get_env())
                        .map(|e| e.to_string_lossy().to_string())
                        .unwrap_or_default()
                ),
                "env",
            ),
            Some(ValueSource::DefaultValue) => ("default".to_string(), "default"),
            _ => ("unset".to_string(), "unset"),
        }
    }
}

/// One `config` line: a setting, its value and where it came from.
fn setting(name: &str, value: &str, origin: (String, &'static str)) -> Check {
    Check::new(
        "config",
        Status::Ok,
        format!("{name} {value} ({})", origin.0),
    )
    .data(json!({
        "setting": name,
        "value": value,
        "source": origin.1,
        "origin": origin.0,
    }))
}

/// The settings that come from the command line and environment.
fn config_checks(cli: &Cli, args: &DoctorArgs, origins: &Origins) -> Vec<Check> {
    let mut checks = vec![
        setting("lake", &cli.lake, origins.of("lake")),
        setting(
            "cluster",
            cli.cluster.as_deref().unwrap_or("none"),
            origins.of("cluster"),
        ),
        setting(
            "base currency",
            &cli.base_currency,
            origins.of("base_currency"),
        ),
        setting(
            "rate source",
            args.source.as_deref().unwrap_or("none"),
            origins.of("source"),
        ),
    ];
    if let Some(config) = &args.config {
        checks.push(setting(
            "config file",
            &config.display().to_string(),
            origins.of("config"),
        ));
    }
    checks
}

/// Runs `future` for at most `timeout`; the error says it timed out.
async fn bounded<T, E: std::fmt::Display>(
    timeout: Duration,
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s (--timeout)",
            timeout.as_secs()
        )),
    }
}

/// A storage error as one line and its hint: S3 errors carry a `check:` line of their own.
fn split_hint(text: &str, default_hint: &str) -> (String, String) {
    match text.split_once("\n  check: ") {
        Some((message, check)) => (message.to_string(), format!("check {check}")),
        None => (text.replace('\n', " "), default_hint.to_string()),
    }
}

/// The lake: reachable, readable, writable, its tables' versions; and the orphan files
/// `vacuum` would delete (which needs the lake, so it is checked here).
async fn check_lake(
    location: &str,
    options: &S3Options,
    timeout: Duration,
    retention_hours: u64,
) -> (Check, Check) {
    let orphans_skipped = || {
        Check::new(
            "orphans",
            Status::Fail,
            "not counted: the lake could not be used",
        )
        .hint("fix the lake first")
    };
    let lake = match bounded(timeout, Lake::open(location, false, options)).await {
        Ok(lake) => lake,
        Err(why) => {
            let (message, hint) = split_hint(
                &why,
                "check --lake / FXPIPE_LAKE; create a lake with `fxpipe quickstart`, `load` or `ingest`",
            );
            let lake = Check::fail("lake", format!("{location} unreachable: {message}"), hint);
            return (lake, orphans_skipped());
        }
    };
    let kind = if lake.s3().is_some() { "S3" } else { "local" };
    let name = format!("{} ({kind})", lake.display());
    if let Err(why) = bounded(timeout, probe::read(&lake)).await {
        let (message, hint) = split_hint(&why, "check the lake folder's permissions");
        let check = Check::fail("lake", format!("{name} not readable: {message}"), hint);
        return (check, orphans_skipped());
    }
    let written = bounded(timeout, probe::write(&lake)).await;
    let (versions, missing, broken) = table_versions(&lake, timeout).await;
    let message = lake_summary(&name, written.is_ok(), &versions, &missing);
    let data = json!({
        "lake": lake.display(),
        "storage": kind,
        "writable": written.is_ok(),
        "tables": versions.iter().map(|(t, v)| (t.sql_name().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    let check = match (&written, broken.first()) {
        (Err(why), _) => {
            let (why, hint) = split_hint(
                why,
                &format!(
                    "jobs write the lake: check permissions on {} and that {}/ can be created",
                    lake.display(),
                    probe::PROBE_PREFIX
                ),
            );
            Check::fail("lake", format!("{message}: {why}"), hint)
        }
        (Ok(()), Some((table, why))) => Check::fail(
            "lake",
            format!("{message}; table {} unreadable: {why}", table.sql_name()),
            "the table's _delta_log is damaged or was written by an incompatible tool",
        ),
        (Ok(()), None) => Check::new("lake", Status::Ok, message),
    }
    .data(data);
    (check, check_orphans(&lake, timeout, retention_hours).await)
}

/// `NAME readable, writable; tables: transactions v3, …; not yet: processed`.
fn lake_summary(
    name: &str,
    writable: bool,
    versions: &[(Table, u64)],
    missing: &[Table],
) -> String {
    let mut message = format!(
        "{name} readable, {}",
        if writable { "writable" } else { "NOT writable" }
    );
    if versions.is_empty() {
        message.push_str("; no tables yet");
        return message;
    }
    let tables: Vec<String> = versions
        .iter()
        .map(|(t, v)| format!("{} v{v}", t.sql_name()))
        .collect();
    message.push_str(&format!("; tables: {}", tables.join(", ")));
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|t| t.sql_name()).collect();
        message.push_str(&format!("; not yet: {}", names.join(", ")));
    }
    message
}

/// Each table's current version; the tables without a commit; the tables that failed to load.
async fn table_versions(
    lake: &Lake,
    timeout: Duration,
) -> (Vec<(Table, u64)>, Vec<Table>, Vec<(Table, String)>) {
    let opened = futures::future::join_all(Table::ALL.into_iter().map(|table| async move {
        let version = bounded(timeout, delta::open(lake, table))
            .await
            .map(|t| t.and_then(|t| t.version()));
        (table, version)
    }))
    .await;
    let (mut versions, mut missing, mut broken) = (Vec::new(), Vec::new(), Vec::new());
    for (table, version) in opened {
        match version {
            Ok(Some(version)) => versions.push((table, version)),
            Ok(None) => missing.push(table),
            Err(why) => broken.push((table, why)),
        }
    }
    (versions, missing, broken)
}

/// What `vacuum --dry-run` would delete, counted per table; nothing is deleted.
async fn check_orphans(lake: &Lake, timeout: Duration, retention_hours: u64) -> Check {
    let counted = futures::future::join_all(Table::ALL.into_iter().map(|table| async move {
        let files = bounded(timeout, delta::vacuum(lake, table, retention_hours, true)).await;
        (table, files.map(|f| f.len()))
    }))
    .await;
    let mut found = Vec::new();
    for (table, files) in counted {
        match files {
            Ok(0) => {}
            Ok(n) => found.push((table, n)),
            Err(why) => {
                return Check::fail(
                    "orphans",
                    format!("cannot list {}: {why}", table.sql_name()),
                    "run `fxpipe vacuum --dry-run` to see the error in full",
                )
            }
        }
    }
    let total: usize = found.iter().map(|(_, n)| n).sum();
    let data = json!({
        "retention_hours": retention_hours,
        "files": total,
        "tables": found.iter().map(|(t, n)| (t.sql_name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
    });
    if total == 0 {
        return Check::new(
            "orphans",
            Status::Ok,
            format!("none: vacuum would delete no files (retention {retention_hours} h)"),
        )
        .data(data);
    }
    let per_table: Vec<String> = found
        .iter()
        .map(|(t, n)| format!("{} {n}", t.sql_name()))
        .collect();
    Check::new(
        "orphans",
        Status::Warn,
        format!(
            "{total} files vacuum would delete (retention {retention_hours} h): {}",
            per_table.join(", ")
        ),
    )
    .hint("`fxpipe vacuum --dry-run` lists them, `fxpipe vacuum` deletes them")
    .data(data)
}

/// The AWS chain, for a lake on S3: the endpoint and region as `config` lines, then the
/// credentials' source.
async fn check_aws(
    on_s3: bool,
    options: &S3Options,
    timeout: Duration,
    origins: &Origins,
) -> (Vec<Check>, Check) {
    if !on_s3 {
        let check = Check::new("aws", Status::NotUsed, "not used (local lake)");
        return (Vec::new(), check);
    }
    let report: ChainReport = match tokio::time::timeout(timeout, s3::inspect_chain(options)).await
    {
        Ok(report) => report,
        Err(_) => {
            let check = Check::fail(
                    "aws",
                    format!(
                        "the AWS credential chain gave no answer within {} s",
                        timeout.as_secs()
                    ),
                    "off EC2, set AWS_REGION and credentials (or AWS_EC2_METADATA_DISABLED=true) so instance metadata is not waited for",
                );
            return (Vec::new(), check);
        }
    };
    let mut config = Vec::new();
    config.push(match &report.endpoint {
        None => setting("S3 endpoint", "AWS", ("default".to_string(), "default")),
        Some((url, source)) => {
            let origin = match source {
                EndpointSource::Options => origins.of("s3_endpoint"),
                EndpointSource::Environment(variable) => (format!("env {variable}"), "env"),
                EndpointSource::Profile => ("profile endpoint_url".to_string(), "file"),
            };
            setting("S3 endpoint", url, origin)
        }
    });
    let region = match &report.region {
        Some((region, source)) => {
            let kind = match source {
                s3::ChainSource::Environment(_) => "env",
                s3::ChainSource::Profile(_) => "file",
                s3::ChainSource::InstanceMetadata => "instance_metadata",
            };
            config.push(setting("region", region, (source.to_string(), kind)));
            region.clone()
        }
        None => {
            config.push(Check::fail(
                "config",
                "region: none",
                "set AWS_REGION, or `region` in the profile of ~/.aws/config (fxpipe does not assume us-east-1)",
            ).data(json!({"setting": "region", "source": "unset"})));
            "none".to_string()
        }
    };
    let check = match &report.credentials {
        Ok(source) => Check::new(
            "aws",
            Status::Ok,
            format!("credentials from {source}; region {region}"),
        )
        .data(json!({"credentials": source.kind(), "region": region})),
        Err(why) => Check::fail(
            "aws",
            format!("no credentials: {why}"),
            "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance or task role",
        ),
    };
    (config, check)
}

/// The Open Exchange Rates App ID: where it is, never what it is.
fn check_oxr(args: &DoctorArgs) -> Check {
    let located = key::locate(args.config.as_deref(), |v| std::env::var(v).ok());
    let hint = "export OXR_APP_ID=…, or put `app_id` under [oxr] in fxpipe.toml (--config)";
    match (args.source.as_deref(), located) {
        (Some(source), _) if source != "oxr" => Check::new(
            "oxr",
            Status::NotUsed,
            format!("not used (rates from {source})"),
        ),
        (_, Ok((_, origin))) => Check::new("oxr", Status::Ok, format!("App ID present ({origin})"))
            .data(json!({"origin": origin.to_string()})),
        (None, Err(KeyError::Missing { .. })) => Check::new(
            "oxr",
            Status::NotUsed,
            "not used (no App ID found; --source oxr or FXPIPE_RATE_SOURCE=oxr requires one)",
        ),
        (_, Err(why)) => Check::fail("oxr", why.to_string(), hint),
    }
}

/// The Ballista scheduler, when jobs run on a cluster.
async fn check_cluster(
    address: Option<&str>,
    tls_dir: Option<&std::path::Path>,
    timeout: Duration,
) -> Check {
    let Some(address) = address else {
        return Check::new(
            "cluster",
            Status::NotUsed,
            "not used (no --cluster / FXPIPE_CLUSTER: jobs run in this process)",
        );
    };
    let tls = match tls_dir.map(fxpipe::engine::tls::Tls::load).transpose() {
        Ok(tls) => tls,
        Err(error) => {
            return Check::fail(
                "cluster",
                error.to_string(),
                "check --tls-dir / FXPIPE_TLS_DIR",
            )
        }
    };
    let status = match tokio::time::timeout(
        timeout,
        scheduler_api::status(address, timeout, tls.as_ref()),
    )
    .await
    {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(EngineError::RestApi { why, .. })) => Err(why),
        Ok(Err(other)) => Err(other.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s (--timeout)",
            timeout.as_secs()
        )),
    };
    match status {
        Ok(status) if status.executors == 0 => Check::fail(
            "cluster",
            format!(
                "{address} answers (Ballista {}), but no executor has registered",
                status.version
            ),
            "start fxpipe-executor with --scheduler-host and --scheduler-port of this scheduler",
        )
        .data(json!({"executors": 0, "version": status.version})),
        Ok(status) => Check::new(
            "cluster",
            Status::Ok,
            format!(
                "{address} Ballista {}, {} executor{}, {} cores (partitions per stage unless --cluster-partitions)",
                status.version,
                status.executors,
                if status.executors == 1 { "" } else { "s" },
                status.vcores
            ),
        )
        .data(json!({"executors": status.executors, "vcores": status.vcores, "version": status.version})),
        Err(why) => Check::fail(
            "cluster",
            format!("{address} unreachable: {why}"),
            "start fxpipe-scheduler there, or check --cluster / FXPIPE_CLUSTER (df://HOST:PORT)",
        ),
    }
}
