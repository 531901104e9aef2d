//! The jobs that write the lake (`gen`, `load`, `normalize`, `vacuum`, `optimize`,
//! `quickstart`): run one, print its report, save it beside the lake.

use std::io::Write;

use anyhow::Context;
use chrono::NaiveDate;
use fxpipe::engine::Engine;
use fxpipe::gen;
use fxpipe::ingest;
use fxpipe::jobs::load::LoadOptions;
use fxpipe::jobs::normalize::NormalizeOptions;
use fxpipe::jobs::{analytics, load, normalize};
use fxpipe::report;
use fxpipe::storage::inputs::Input;
use fxpipe::storage::{compact, delta, Lake, Table};

use super::args::{GenCommand, OptimizeArgs, QuickstartArgs, VacuumArgs};
use super::ingest::finish_ingest;
use super::print::{self, Format, MaxRows};
use super::progress;

pub(crate) fn run_gen(command: &GenCommand) -> anyhow::Result<()> {
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

pub(crate) async fn run_load(
    engine: &Engine,
    lake: &Lake,
    files: &[Input],
    options: &LoadOptions,
    quiet: bool,
) -> anyhow::Result<()> {
    let report = progress::during(
        engine,
        "load",
        quiet,
        load::load(engine, lake, files, options),
    )
    .await?;
    let saved = report::save(lake, "load", &report).await?;
    write!(print::stdout(), "{report}")?;
    outln!("  report: {saved}")?;
    Ok(())
}

pub(crate) async fn run_normalize(
    engine: &Engine,
    lake: &Lake,
    options: &NormalizeOptions,
    quiet: bool,
) -> anyhow::Result<()> {
    let report = progress::during(
        engine,
        "normalize",
        quiet,
        normalize::normalize(engine, lake, options),
    )
    .await?;
    let saved = report::save(lake, "normalize", &report).await?;
    write!(print::stdout(), "{report}")?;
    outln!("  output: {}", lake.table_url(Table::Processed))?;
    outln!("  report: {saved}")?;
    Ok(())
}

pub(crate) async fn quickstart(
    engine: &Engine,
    lake: &Lake,
    base: &str,
    args: &QuickstartArgs,
    quiet: bool,
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
        progress_bar: super::progress::bars_allowed(quiet),
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
    run_load(
        engine,
        lake,
        &[Input::local(csv)],
        &LoadOptions::default(),
        quiet,
    )
    .await?;

    outln!("\n== 4. normalize to {base}")?;
    let options = NormalizeOptions {
        base_currency: base.to_string(),
        ..Default::default()
    };
    run_normalize(engine, lake, &options, quiet).await?;

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

pub(crate) async fn vacuum(lake: &Lake, args: &VacuumArgs) -> anyhow::Result<()> {
    if !args.force && !args.dry_run {
        // A job running now has staged files (and a cluster job its broadcast file) no
        // version references yet, as old as the job: a retention shorter than the longest
        // job would delete them under it. At least an hour, for jobs never reported.
        let longest = fxpipe::report::longest_run(lake).await?.unwrap_or_default();
        let floor_hours = longest.as_secs().div_ceil(3600).max(1);
        if args.retention_hours < floor_hours {
            anyhow::bail!(
                "a retention of {} hours could delete the files of a job running now: the \
                 longest recent job took {} s, so keep a retention of at least {floor_hours} h, or pass \
                 --force if no fxpipe command is running on this lake",
                args.retention_hours,
                longest.as_secs()
            );
        }
    }
    for table in Table::ALL {
        let files = delta::vacuum(lake, table, args.retention_hours, args.dry_run).await?;
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
    let files =
        fxpipe::engine::broadcast::vacuum_scratch(lake, args.retention_hours, args.dry_run).await?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    outln!(
        "{}/ (files of cluster jobs that did not end): {verb} {} files",
        fxpipe::engine::broadcast::SCRATCH_PREFIX,
        files.len()
    )?;
    if args.dry_run {
        for file in &files {
            outln!("  {file}")?;
        }
    }
    Ok(())
}

pub(crate) async fn optimize(
    engine: &Engine,
    lake: &Lake,
    args: &OptimizeArgs,
) -> anyhow::Result<()> {
    for table in Table::ALL {
        if !delta::compactable(table) {
            outln!(
                "{}: kept as written (one set of files per source file, so a re-load replaces only its own)",
                table.sql_name()
            )?;
            continue;
        }
        let target = args.target_mib.saturating_mul(1 << 20);
        match compact::optimize(lake, table, engine.local_ctx(), target).await? {
            None => outln!("{}: no table yet", table.sql_name())?,
            Some(compact::Compaction {
                files_removed: Some(0),
                version,
                ..
            }) => outln!(
                "{}: nothing to compact (version {version})",
                table.sql_name()
            )?,
            Some(compact::Compaction {
                files_removed: Some(removed),
                files_added: Some(added),
                partitions: Some(partitions),
                version,
            }) => outln!(
                "{}: {removed} small files compacted into {added} in {partitions} partitions (version {version})",
                table.sql_name(),
            )?,
            Some(c) => outln!(
                "{}: compacted (version {}; the commit's answer was lost, so its counts are unknown)",
                table.sql_name(),
                c.version
            )?,
        }
    }
    Ok(())
}
