//! Command line: parse, dispatch one command, map its error to an exit code.
//!
//! Split by concern, as datafusion-cli is: [`args`] (every flag), [`statements`] (running SQL),
//! [`repl`] (the interactive shell and its backslash commands), [`print`] and [`output`] (result
//! formats and files), [`progress`] (bars on a terminal), [`jobs`] and [`ingest`] (the commands
//! that write the lake).

/// `println!` that returns the write's error instead of panicking on a closed stdout.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(print::stdout(), $($arg)*)
    };
}

mod args;
mod catalog;
mod doctor;
mod errors;
mod ingest;
mod jobs;
mod logging;
mod output;
mod print;
mod progress;
mod readonly;
mod repl;
mod report_cmd;
mod run;
mod statements;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use fxpipe::engine::Engine;
use fxpipe::jobs::analytics;
use fxpipe::jobs::load::LoadOptions;
use fxpipe::jobs::normalize::NormalizeOptions;
use fxpipe::storage::{inputs, Lake, S3Options};

use args::{Cli, Command};

/// Parses arguments, runs the command, maps errors to exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init_logging(cli.verbose, cli.log_format);
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
            if e.downcast_ref::<errors::Interrupted>().is_some() {
                return ExitCode::from(130);
            }
            if outcome_unknown(&e) {
                return ExitCode::from(OUTCOME_UNKNOWN);
            }
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a command whose last commit may or may not have landed (the log could
/// not be read after it failed): EX_TEMPFAIL, so a scheduler can tell it from a failure and
/// simply run the command again.
pub const OUTCOME_UNKNOWN: u8 = 75;

fn outcome_unknown(error: &anyhow::Error) -> bool {
    use fxpipe::storage::StorageError;
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<StorageError>(),
            Some(StorageError::OutcomeUnknown { .. })
        ) || cause
            .downcast_ref::<fxpipe::jobs::JobError>()
            .is_some_and(|e| e.outcome_unknown())
            || matches!(
                cause.downcast_ref::<fxpipe::ingest::IngestError>(),
                Some(fxpipe::ingest::IngestError::Storage(
                    StorageError::OutcomeUnknown { .. }
                ))
            )
    })
}

/// `fxpipe cluster certs`: a CA and the members' certificates, unless kept.
fn cluster_certs(certs: &args::ClusterCertsArgs) -> anyhow::Result<()> {
    let existing = certs.out.join("client").join("cert.pem");
    if certs.keep_existing && existing.exists() {
        outln!(
            "{} already holds a cluster's certificates: kept",
            certs.out.display()
        )?;
        return Ok(());
    }
    let written = fxpipe::engine::tls::generate(&certs.out, &certs.hosts, certs.days)?;
    for member in &written.members {
        outln!("{}", member.display())?;
    }
    outln!(
        "CA key: {} (keep it off the nodes; it signs new members)",
        written.ca_key.display()
    )?;
    Ok(())
}

/// The engine the command runs on: the cluster when one is given and the command runs there,
/// else this process.
async fn engine_for(cli: &Cli, on_cluster: bool) -> anyhow::Result<Engine> {
    let extensions = fxpipe::extensions();
    Ok(match &cli.cluster {
        Some(address) if on_cluster => {
            let tls = cli
                .tls_dir
                .as_deref()
                .map(fxpipe::engine::tls::Tls::load)
                .transpose()?;
            Engine::cluster(address, cli.cluster_partitions, tls, &extensions).await?
        }
        Some(address) => {
            tracing::info!(%address, "this command runs in this process, not on the cluster");
            Engine::embedded(&extensions)
        }
        None => Engine::embedded(&extensions),
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Gen(command) = &cli.command {
        return jobs::run_gen(command);
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
    if let Command::Cluster(args::ClusterCommand::Certs(certs)) = &cli.command {
        return cluster_certs(certs);
    }
    if let Command::Doctor(args) = &cli.command {
        return doctor::run(&cli, args).await;
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
    lake.set_command(command_name(&cli.command));
    let on_cluster = matches!(
        cli.command,
        Command::Load(_)
            | Command::Normalize(_)
            | Command::Sql(_)
            | Command::Report(_)
            | Command::Run(_)
    );
    let engine = engine_for(&cli, on_cluster).await?;
    engine.attach(&lake);
    let cluster = engine.cluster_address().map(str::to_string);
    let progress = engine.watch_progress(progress::bars_allowed(cli.quiet));
    let guarded = engine.clone();
    let mut result = run_command(cli, engine, lake, &s3).await;
    if let Some(progress) = progress {
        progress.finish().await;
    }
    // A job the runaway guard cancelled fails as that, whatever its stream said.
    if let (Err(_), Some(runaway)) = (&result, guarded.runaway()) {
        result = Err(anyhow::Error::new(runaway));
    }
    match cluster {
        // A job that failed on the cluster says where it ran (the scheduler may be gone).
        Some(address) => {
            result.with_context(|| format!("the job ran on the Ballista cluster at {address}"))
        }
        None => result,
    }
}

/// The subcommand's name as typed, which every commit of this run records.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Gen(_) => "gen",
        Command::Ingest(_) => "ingest",
        Command::Load(_) => "load",
        Command::Normalize(_) => "normalize",
        Command::Sql(_) => "sql",
        Command::Report(_) => "report",
        Command::Vacuum(_) => "vacuum",
        Command::Optimize(_) => "optimize",
        Command::Quickstart(_) => "quickstart",
        Command::Run(_) => "run",
        Command::Catalog(_) => "catalog",
        Command::Completions(_) => "completions",
        Command::Cluster(_) => "cluster",
        Command::Doctor(_) => "doctor",
    }
}

/// Runs the command on an engine and lake already set up.
async fn run_command(cli: Cli, engine: Engine, lake: Lake, s3: &S3Options) -> anyhow::Result<()> {
    let base = &cli.base_currency;
    let quiet = cli.quiet;
    match cli.command {
        Command::Gen(_) | Command::Completions(_) | Command::Doctor(_) | Command::Cluster(_) => {
            Ok(())
        }
        Command::Ingest(args) => {
            ingest::run_ingest_command(&engine, &lake, args, base, quiet).await
        }
        Command::Load(args) => {
            let options = LoadOptions {
                decimal_separator: args.decimal_separator,
                verify: args.verify,
            };
            let inputs = inputs::resolve(&args.files, &lake, s3).await?;
            jobs::run_load(&engine, &lake, &inputs, &options, quiet).await
        }
        Command::Normalize(args) => {
            let options = NormalizeOptions {
                base_currency: base.clone(),
                max_rate_age_days: args.conversion.max_rate_age,
                strict: args.conversion.strict,
                column_suffix: if args.columns_follow_base {
                    base.to_ascii_lowercase()
                } else {
                    "sgd".to_string()
                },
                months: args.from.zip(args.to),
                write_shuffle: args.write_shuffle.into(),
                changed: args.changed,
                max_open_files: args.conversion.max_open_files as usize,
            };
            jobs::run_normalize(&engine, &lake, &options, quiet).await
        }
        Command::Sql(args) => statements::run_sql(&engine, &lake, args, base).await,
        Command::Report(args) => {
            if let Some(file) = &args.extras.html {
                return report_cmd::html(&engine, &lake, file).await;
            }
            let to = args.output.format()?;
            let name = args.name.as_deref().unwrap_or_default();
            let frame =
                analytics::report_with(&engine, &lake, name, &args.extras.options()).await?;
            engine.guard_stages(frame.logical_plan()).await;
            statements::emit(frame, to.as_ref(), args.format, args.max_rows.value, base).await
        }
        Command::Vacuum(args) => jobs::vacuum(&lake, &args).await,
        Command::Optimize(args) => jobs::optimize(&engine, &lake, &args).await,
        Command::Quickstart(args) => jobs::quickstart(&engine, &lake, base, &args, quiet).await,
        Command::Run(args) => run::run(&engine, &lake, args, base, s3, quiet).await,
        Command::Catalog(command) => catalog::run(&lake, command).await,
    }
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
