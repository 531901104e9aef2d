//! `fxpipe load`: raw CSV exports → the typed transactions table, faults → the rejects table.
//!
//! **Identity.** A file is identified by its full path, made absolute and canonical (symlinks
//! resolved), recorded as `source_file` on every row: two monthly exports both called
//! `statement.csv` in different folders are two files. Its content is identified by the BLAKE3
//! hash of the bytes the parser read, computed in the same single read.
//!
//! **Idempotency.** A path whose size and modification time (size and ETag on S3) are those
//! recorded when it was loaded is skipped without being read (`--verify` reads it anyway).
//! Content already loaded under any path is skipped after its read (the report names that
//! path); new content at a path replaces that path's rows.
//!
//! **Crash repair.** Each table changes in its own commit, so a run can stop between commits.
//! The invariant that makes a re-run repair it: *a `loads` row for a path exists only while
//! `transactions` and `rejects` hold exactly that row's content for the path*. A run that is
//! about to change a path's rows first removes the path's `loads` row (its own commit), then
//! replaces the rows in `transactions` and `rejects`, then writes the new `loads` row last.
//! A run that stops anywhere in between leaves no `loads` row for the path, so the next run,
//! with whatever content, never skips it and replaces the path's rows again.
//!
//! **One read, nothing left behind.** Rows and rejects are written as data files while the
//! file is parsed and hashed; they are committed only after the hash shows the content is new.
//! Otherwise they are deleted, so a skipped file leaves no trace, even for plain-Parquet readers.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::TimestampMicrosecondArray;
use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::DataFusionError;
use datafusion::prelude::{col, lit};
use deltalake::DeltaTable;
use tracing::{info, info_span, warn, Instrument};

use super::JobError;
use crate::engine::write::WriteTarget;
use crate::engine::Engine;
use crate::faults;
use crate::report::{FileLoad, LoadReport};
use crate::storage::delta::{self, WriteMode};
use crate::storage::inputs::{Input, InputError};
use crate::storage::staged::{self, StagedFiles, StagedWriter};
use crate::storage::{Lake, Table};
use crate::transactions::csv::{CsvBatch, LoadCounts, TransactionCsv};
use crate::transactions::fields::{DecimalMark, DecimalSeparator};
use crate::transactions::{loads_schema, rejects_schema};

/// How the files of one load are read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// How amounts write their decimals (`auto`: by the file's delimiter).
    pub decimal_separator: DecimalSeparator,
    /// Read and hash every file, even one that looks as it did when it was loaded.
    pub verify: bool,
}

/// The stamps of the loaded paths (`loads.source_stamp`), read once per run: a path whose
/// stamp is unchanged is skipped unread.
struct Stamps {
    known: std::collections::HashMap<String, (String, String)>,
    decimal: &'static str,
}

impl Stamps {
    async fn read(engine: &Engine, lake: &Lake, options: &LoadOptions) -> Result<Self, JobError> {
        let decimal = match options.decimal_separator {
            DecimalSeparator::Auto => "auto",
            DecimalSeparator::Point => ".",
            DecimalSeparator::Comma => ",",
        };
        let mut known = std::collections::HashMap::new();
        if options.verify || !engine.register_table(lake, Table::Loads).await? {
            return Ok(Self { known, decimal });
        }
        let loads = engine.ctx().table(Table::Loads.sql_name()).await?;
        if !loads
            .schema()
            .has_column_with_unqualified_name("source_stamp")
        {
            return Ok(Self { known, decimal });
        }
        let batches = loads
            .filter(col("source_stamp").is_not_null())?
            .select_columns(&["source_file", "source_stamp", "source_hash"])?
            .collect()
            .await?;
        for batch in &batches {
            // Utf8 or Utf8View, as the scan gives them.
            let text = |i: usize| arrow::compute::cast(batch.column(i), &DataType::Utf8);
            let (files, stamps, hashes) = (text(0)?, text(1)?, text(2)?);
            let (files, stamps, hashes) = (
                files.as_string::<i32>(),
                stamps.as_string::<i32>(),
                hashes.as_string::<i32>(),
            );
            for row in 0..batch.num_rows() {
                known.insert(
                    files.value(row).to_string(),
                    (stamps.value(row).to_string(), hashes.value(row).to_string()),
                );
            }
        }
        Ok(Self { known, decimal })
    }

    /// The stamp to record for `input`, read as this run's options say.
    async fn of(&self, input: &Input) -> Option<String> {
        Some(format!("{};decimal={}", input.stamp().await?, self.decimal))
    }

    /// The recorded hash of `source_file` if `stamp` is still its stamp.
    fn unchanged(&self, source_file: &str, stamp: Option<&str>) -> Option<String> {
        let (known, hash) = self.known.get(source_file)?;
        (Some(known.as_str()) == stamp).then(|| hash.clone())
    }
}

/// Loads each file in turn (one set of commits per file). On a cluster the files are parsed
/// and staged on the executors, all at once (see [`super::load_tasks`]); the commits are the
/// same, file by file in order.
pub async fn load(
    engine: &Engine,
    lake: &Lake,
    files: &[Input],
    options: &LoadOptions,
) -> Result<LoadReport, JobError> {
    if engine.cluster_address().is_some() {
        return load_on_cluster(engine, lake, files, options).await;
    }
    let started = Instant::now();
    let stamps = Stamps::read(engine, lake, options).await?;
    let mut report = LoadReport::default();
    let mut todo = Vec::new();
    for input in files {
        let source_file = identity(input)?;
        let stamp = stamps.of(input).await;
        match stamps.unchanged(&source_file, stamp.as_deref()) {
            Some(hash) => {
                info!(%source_file, "unchanged since it was loaded, skipping unread");
                report.add(FileLoad::unchanged(source_file, hash));
            }
            None => todo.push((input, stamp)),
        }
    }
    let mut total = 0;
    for (input, _) in &todo {
        total += input.size().await.unwrap_or(0);
    }
    engine.meter().expect_bytes(total);
    for (input, stamp) in todo {
        let span = info_span!("load", file = %input.display_path().display());
        let file = load_file(engine, lake, input, options, stamp.as_deref())
            .instrument(span)
            .await?;
        report.add(file);
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn load_on_cluster(
    cluster: &Engine,
    lake: &Lake,
    files: &[Input],
    options: &LoadOptions,
) -> Result<LoadReport, JobError> {
    use super::load_tasks::{self, ParseNode};
    let started = Instant::now();
    // The bookkeeping (what is loaded, what to replace) reads the lake here, through delta-rs.
    let local = Engine::embedded(cluster.extensions());
    local.attach(lake);
    let stamps = Stamps::read(&local, lake, options).await?;
    let mut report = LoadReport::default();
    let mut identities = Vec::new();
    let mut todo = Vec::new();
    let mut stamped = Vec::new();
    for input in files {
        let source_file = identity(input)?;
        let stamp = stamps.of(input).await;
        match stamps.unchanged(&source_file, stamp.as_deref()) {
            Some(hash) => {
                info!(%source_file, "unchanged since it was loaded, skipping unread");
                report.add(FileLoad::unchanged(source_file, hash));
            }
            None => {
                identities.push(source_file);
                todo.push(input);
                stamped.push(stamp);
            }
        }
    }
    if todo.is_empty() {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let spec = parse_spec(lake, options, &todo, &identities);
    let batches = cluster
        .collect(ParseNode::new(spec)?.into_plan())
        .instrument(info_span!("parse on the cluster", files = todo.len()))
        .await?;
    let outcomes = load_tasks::outcomes(&batches)?;
    let mut pending = in_command_line_order(outcomes, identities, stamped)?.into_iter();
    while let Some((source_file, stamp, outcome)) = pending.next() {
        let span = info_span!("load", file = %source_file);
        let committed = commit_outcome(&local, lake, &source_file, stamp.as_deref(), outcome)
            .instrument(span)
            .await;
        match committed {
            Ok(mut file) => {
                file.elapsed_ms = started.elapsed().as_millis() as u64;
                report.add(file);
            }
            Err(error) => {
                // The later files were staged too, and will never be committed.
                discard_staged(lake, pending).await?;
                return Err(error);
            }
        }
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// What the cluster's parse tasks read and where they stage the rows and rejects.
fn parse_spec(
    lake: &Lake,
    options: &LoadOptions,
    todo: &[&Input],
    identities: &[String],
) -> super::load_tasks::ParseSpec {
    use super::load_tasks::{ParseFile, ParseSpec};
    use crate::storage::inputs::InputRef;
    ParseSpec {
        files: todo
            .iter()
            .copied()
            .zip(identities)
            .map(|(input, source_file)| ParseFile {
                // A local file by its canonical path, which every node must see.
                input: match input.reference() {
                    InputRef::Local(_) => InputRef::Local(source_file.into()),
                    object => object,
                },
                source_file: source_file.clone(),
            })
            .collect(),
        decimal_separator: match options.decimal_separator {
            DecimalSeparator::Auto => "auto",
            DecimalSeparator::Point => ".",
            DecimalSeparator::Comma => ",",
        }
        .to_string(),
        transactions: WriteTarget::of(lake, Table::Transactions, None, false),
        rejects: WriteTarget::of(lake, Table::Rejects, None, false),
    }
}

/// A cluster-staged file: its identity, its stamp and what its task staged.
type StagedOutcome = (String, Option<String>, super::load_tasks::Outcome);

/// The tasks end in any order; the commits follow the command line's.
fn in_command_line_order(
    mut outcomes: Vec<(String, super::load_tasks::Outcome)>,
    identities: Vec<String>,
    stamped: Vec<Option<String>>,
) -> Result<Vec<StagedOutcome>, JobError> {
    let mut ordered = Vec::with_capacity(identities.len());
    for (source_file, stamp) in identities.into_iter().zip(stamped) {
        let at = outcomes
            .iter()
            .position(|(f, _)| *f == source_file)
            .ok_or_else(|| {
                JobError::Invalid(format!("the cluster returned nothing for {source_file}"))
            })?;
        let (file, outcome) = outcomes.swap_remove(at);
        ordered.push((file, stamp, outcome));
    }
    Ok(ordered)
}

/// Deletes the files the cluster staged for loads that will not be committed.
async fn discard_staged(
    lake: &Lake,
    pending: impl Iterator<Item = StagedOutcome>,
) -> Result<(), JobError> {
    for (later, _, outcome) in pending {
        let Ok(parsed) = outcome else { continue };
        for (table, adds) in [
            (Table::Transactions, parsed.rows),
            (Table::Rejects, parsed.rejects),
        ] {
            let discarded = StagedFiles::from_adds(lake, table, adds)?.discard().await;
            if let Err(e) = discarded {
                warn!(source_file = %later, "could not delete staged files: {e}");
            }
        }
    }
    Ok(())
}

/// Commits one file a cluster task staged, as [`load_file`] does after its own parse.
async fn commit_outcome(
    local: &Engine,
    lake: &Lake,
    source_file: &str,
    stamp: Option<&str>,
    outcome: super::load_tasks::Outcome,
) -> Result<FileLoad, JobError> {
    // The error is the one a local load of the file gives (file, line, field).
    let parsed = outcome.map_err(JobError::Invalid)?;
    // The tables' newest versions for each file: the previous file's commits are in them, so
    // this file's commits do not conflict with this run's own (a snapshot kept for the whole
    // run made every commit after the first lose to the one before it, and retry).
    let tables = [
        staged::ensure_table(
            lake,
            Table::Transactions,
            local.ctx(),
            crate::transactions::schema(),
        )
        .await?,
        staged::ensure_table(lake, Table::Rejects, local.ctx(), rejects_schema()).await?,
    ];
    let parsed = Parsed {
        rows: StagedFiles::from_adds(lake, Table::Transactions, parsed.rows)?,
        rejects: StagedFiles::from_adds(lake, Table::Rejects, parsed.rejects)?,
        counts: parsed.counts,
        content: parsed.content,
    };
    commit_or_discard(local, lake, source_file, stamp, &tables, parsed).await
}

/// The identity of an input: `s3://bucket/key` for an object; for a local file its absolute
/// path with symlinks resolved (a `latest.csv` link that points at a new export each month
/// names a new file each month).
pub(crate) fn identity(input: &Input) -> Result<String, JobError> {
    let Some(path) = input.local_path() else {
        let name = input.display_path();
        return Ok(name.to_string_lossy().to_string());
    };
    let absolute = std::fs::canonicalize(path).map_err(|source| JobError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    absolute.to_str().map(str::to_string).ok_or_else(|| {
        JobError::Invalid(format!(
            "{}: the path is not valid UTF-8, so it cannot identify the file; rename it",
            absolute.display()
        ))
    })
}

/// What one read of a file produced: staged (uncommitted) files and the content's identity.
pub(crate) struct Parsed {
    pub(crate) rows: StagedFiles,
    pub(crate) rejects: StagedFiles,
    pub(crate) counts: LoadCounts,
    pub(crate) content: Content,
}

/// What makes two loads the same: the bytes, and the decimal mark they were read with.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Content {
    pub hash: String,
    pub decimal_separator: String,
}

async fn load_file(
    engine: &Engine,
    lake: &Lake,
    input: &Input,
    options: &LoadOptions,
    stamp: Option<&str>,
) -> Result<FileLoad, JobError> {
    let started = Instant::now();
    let source_file = identity(input)?;
    // The header is read before anything is written: a file that is not an export at all
    // changes nothing in the lake.
    let (reader, hasher) = open_export(input, &source_file, options, &engine.meter()).await?;
    let ctx = engine.ctx();
    let tables = [
        staged::ensure_table(
            lake,
            Table::Transactions,
            ctx,
            crate::transactions::schema(),
        )
        .await?,
        staged::ensure_table(lake, Table::Rejects, ctx, rejects_schema()).await?,
    ];

    let writers = [
        StagedWriter::begin(
            lake,
            Table::Transactions,
            &tables[0],
            crate::transactions::schema(),
        )
        .await?,
        StagedWriter::begin(lake, Table::Rejects, &tables[1], rejects_schema()).await?,
    ];
    let [rows_writer, rejects_writer] = writers;
    let parsed = parse_and_stage(reader, hasher, rows_writer, rejects_writer).await?;
    let mut file = commit_or_discard(engine, lake, &source_file, stamp, &tables, parsed).await?;
    file.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(file)
}

/// [`commit_file`], then, if it failed, deletes the staged files it did not commit: whatever
/// was not committed never will be, so nothing is left for plain-Parquet readers.
async fn commit_or_discard(
    engine: &Engine,
    lake: &Lake,
    source_file: &str,
    stamp: Option<&str>,
    tables: &[DeltaTable; 2],
    parsed: Parsed,
) -> Result<FileLoad, JobError> {
    let discarders = [parsed.rows.discarder(), parsed.rejects.discarder()];
    let mut committed = 0;
    let outcome = commit_file(
        engine,
        lake,
        source_file,
        stamp,
        tables,
        parsed,
        &mut committed,
    )
    .await;
    // A commit whose outcome is unknown may have landed: its files stay (for vacuum).
    if outcome.as_ref().is_err_and(|e| !e.outcome_unknown()) {
        for discarder in discarders.into_iter().skip(committed) {
            if let Err(e) = discarder.discard().await {
                warn!(%source_file, "could not delete staged files: {e}");
            }
        }
    }
    outcome
}

/// Commits (or skips) one parsed file; `committed` counts the data tables committed so far
/// (transactions, then rejects), so the caller can delete the staged files of the others.
async fn commit_file(
    engine: &Engine,
    lake: &Lake,
    source_file: &str,
    stamp: Option<&str>,
    tables: &[DeltaTable; 2],
    parsed: Parsed,
    committed: &mut usize,
) -> Result<FileLoad, JobError> {
    let ctx = engine.ctx();
    let Parsed {
        rows,
        rejects,
        counts,
        content,
    } = parsed;
    // Every check that can refuse the load runs before the first commit.
    let prepare =
        |table, opened| staged::prepare_replace(ctx, table, opened, "source_file", source_file);
    let replacements = [
        prepare(Table::Transactions, &tables[0]).await?,
        prepare(Table::Rejects, &tables[1]).await?,
    ];
    let LoadsLookup {
        had_loads_row,
        loaded_as,
    } = look_up_loads(engine, lake, source_file, &content).await?;

    if let Some(earlier) = loaded_as {
        info!(%source_file, %earlier, "same content already loaded, skipping");
        rows.discard().await?;
        rejects.discard().await?;
        *committed = 2;
        let known = Known {
            engine,
            lake,
            source_file,
            stamp,
            tables,
            had_loads_row,
        };
        let orphans = known.tidy(&earlier, replacements).await?;
        return Ok(FileLoad::skipped(
            source_file.to_string(),
            content.hash,
            earlier,
            orphans,
        ));
    }

    // The path's loads row goes first (see the module docs): from here until the last commit,
    // the path is "not loaded", so any re-run redoes it.
    if had_loads_row {
        replace_loads_row(engine, lake, source_file, None).await?;
    }
    faults::after("load:loads-cleared")?;
    // Transactions, then rejects; `committed` says how far it got if one fails.
    let mut replaced_rows = 0;
    let mut version = 0;
    let sides = [(&rows, "load:transactions"), (&rejects, "load:rejects")];
    for (i, ((files, fault), (table, replacement))) in sides
        .into_iter()
        .zip(tables.iter().zip(replacements))
        .enumerate()
    {
        let replaced = staged::commit_replacing_retried(
            lake,
            ctx,
            table,
            Some(files),
            replacement,
            "source_file",
            source_file,
        )
        .await?;
        *committed = i + 1;
        faults::after(fault)?;
        replaced_rows += replaced.rows_removed;
        if i == 0 {
            version = replaced.version;
        }
    }
    replace_loads_row(engine, lake, source_file, Some((&content, &counts, stamp))).await?;

    info!(%source_file, rows_read = counts.rows_read, rows_loaded = counts.rows_loaded,
          rows_rejected = counts.rows_rejected, "loaded");
    Ok(FileLoad::loaded(
        source_file.to_string(),
        content.hash,
        counts,
        replaced_rows,
        version,
        0,
    ))
}

/// A file whose content is already loaded (under this path or another), and what its path
/// had in the lake.
struct Known<'a> {
    engine: &'a Engine,
    lake: &'a Lake,
    source_file: &'a str,
    stamp: Option<&'a str>,
    tables: &'a [DeltaTable; 2],
    had_loads_row: bool,
}

impl Known<'_> {
    /// Leaves the lake as if the file had been loaded cleanly: the same path touched but
    /// unchanged gets its new stamp (so the next run skips it unread), and rows a failed
    /// earlier load of this path left without a loads row are removed (they would otherwise
    /// be counted beside the same content under `earlier`). Returns the rows removed.
    async fn tidy(
        &self,
        earlier: &str,
        replacements: [staged::Replacement; 2],
    ) -> Result<u64, JobError> {
        let (engine, lake, source_file) = (self.engine, self.lake, self.source_file);
        if earlier == source_file && self.had_loads_row {
            if let Some(stamp) = self.stamp {
                restamp_loads_row(engine, lake, source_file, stamp).await?;
            }
        }
        let mut orphans = 0;
        if self.had_loads_row {
            return Ok(orphans);
        }
        for (table, replacement) in self.tables.iter().zip(replacements) {
            if replacement.rows > 0 {
                orphans += staged::commit_replacing_retried(
                    lake,
                    engine.ctx(),
                    table,
                    None,
                    replacement,
                    "source_file",
                    source_file,
                )
                .await?
                .rows_removed;
            }
        }
        Ok(orphans)
    }
}

pub(crate) type SharedHasher = Arc<Mutex<blake3::Hasher>>;

/// Opens an export through a hashing reader and reads its header (on a blocking thread: an
/// S3 download is bridged to a blocking reader).
pub(crate) async fn open_export(
    input: &Input,
    source_file: &str,
    options: &LoadOptions,
    meter: &Arc<crate::engine::meter::Meter>,
) -> Result<(TransactionCsv, SharedHasher), JobError> {
    let file = input.open().await.map_err(|e| match e {
        InputError::Local { path, source } => JobError::Io { path, source },
        other => JobError::Input(other),
    })?;
    let hasher = Arc::new(Mutex::new(blake3::Hasher::new()));
    let reading = HashingReader {
        inner: file,
        hasher: hasher.clone(),
        meter: meter.clone(),
    };
    let path = input.display_path();
    let source_file = source_file.to_string();
    let decimals = options.decimal_separator;
    let reader = tokio::task::spawn_blocking(move || {
        TransactionCsv::new(reading, &path, &source_file, decimals)
    })
    .await
    .map_err(|e| JobError::Invalid(format!("CSV reader task failed: {e}")))??;
    Ok((reader, hasher))
}

/// Reads the rest of the file: parses it on a blocking thread, hashing the same bytes, while
/// this task writes the rows and rejects as data files (not yet committed).
pub(crate) async fn parse_and_stage(
    mut reader: TransactionCsv,
    hasher: SharedHasher,
    mut rows_writer: StagedWriter,
    mut rejects_writer: StagedWriter,
) -> Result<Parsed, JobError> {
    // `auto(,)`: comma decimals guessed from a `;` delimiter, which also refuses the amounts
    // it cannot tell apart, so it reads differently from an explicit `,`.
    let decimal_separator = match (reader.decimal_mark(), reader.decimal_mark_guessed()) {
        (DecimalMark::Point, _) => ".",
        (DecimalMark::Comma, false) => ",",
        (DecimalMark::Comma, true) => "auto(,)",
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<CsvBatch>(2);
    let parser = tokio::task::spawn_blocking(move || {
        while let Some(batch) = reader.next_batch()? {
            if sender.blocking_send(batch).is_err() {
                break;
            }
        }
        Ok::<_, crate::transactions::csv::CsvError>(reader.counts().clone())
    });

    let mut write_error = None;
    while let Some(batch) = receiver.recv().await {
        let written = match &batch {
            CsvBatch::Rows(b) => rows_writer.write(b).await,
            CsvBatch::Rejects(b) => rejects_writer.write(b).await,
        };
        if let Err(e) = written {
            write_error = Some(e);
            break;
        }
    }
    drop(receiver);
    let parsed = parser
        .await
        .map_err(|e| JobError::Invalid(format!("CSV parser task failed: {e}")));
    // A parse error is the root cause of a failed write: report it first.
    let counts = match (parsed, write_error) {
        (Ok(Ok(counts)), None) => counts,
        (Ok(Err(parse)), _) => {
            rows_writer.abort().await;
            rejects_writer.abort().await;
            return Err(parse.into());
        }
        (Err(e), _) => {
            rows_writer.abort().await;
            rejects_writer.abort().await;
            return Err(e);
        }
        (Ok(Ok(_)), Some(e)) => {
            rows_writer.abort().await;
            rejects_writer.abort().await;
            return Err(e.into());
        }
    };
    let rows = rows_writer.finish().await?;
    let rejects = rejects_writer.finish().await?;
    let hash = hasher
        .lock()
        .map_err(|_| JobError::Invalid("the content hasher was poisoned".to_string()))?
        .finalize()
        .to_hex()
        .to_string();
    Ok(Parsed {
        rows,
        rejects,
        counts,
        content: Content {
            hash,
            decimal_separator: decimal_separator.to_string(),
        },
    })
}

/// Hashes every byte the parser reads, so the recorded hash is that of the parsed content.
struct HashingReader<R> {
    inner: R,
    hasher: Arc<Mutex<blake3::Hasher>>,
    /// Counts the bytes read, for the progress bar.
    meter: Arc<crate::engine::meter::Meter>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher
            .lock()
            .map_err(|_| std::io::Error::other("the content hasher was poisoned"))?
            .update(&buf[..n]);
        self.meter.add_bytes(n as u64);
        Ok(n)
    }
}

/// The first value of a one-column result as text (delta-rs reads strings as Utf8View).
fn first_text(batches: &[RecordBatch]) -> Result<Option<String>, JobError> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let text = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    Ok((!text.is_null(0)).then(|| text.value(0).to_string()))
}

/// What the `loads` table says about a path and a content.
struct LoadsLookup {
    /// The path has a `loads` row (its rows in the data tables are complete).
    had_loads_row: bool,
    /// The path the same content (bytes and decimal mark) was loaded under, if any.
    loaded_as: Option<String>,
}

/// Reads the `loads` table once, at its latest version, for both questions a load asks.
async fn look_up_loads(
    engine: &Engine,
    lake: &Lake,
    source_file: &str,
    content: &Content,
) -> Result<LoadsLookup, JobError> {
    if !engine.register_table(lake, Table::Loads).await? {
        return Ok(LoadsLookup {
            had_loads_row: false,
            loaded_as: None,
        });
    }
    let loads = engine.ctx().table(Table::Loads.sql_name()).await?;
    if !loads
        .schema()
        .has_column_with_unqualified_name("decimal_separator")
    {
        return Err(JobError::Invalid(format!(
            "the lake at {} was written by an earlier fxpipe: its `loads` table has no \
             decimal_separator column and its rows name files without their folders; load \
             the exports into a new lake (--lake NEW), then normalize there",
            lake.display()
        )));
    }
    let had_loads_row = loads
        .clone()
        .filter(col("source_file").eq(lit(source_file)))?
        .count()
        .await?
        > 0;
    let earlier = loads
        .filter(
            col("source_hash")
                .eq(lit(content.hash.as_str()))
                .and(col("decimal_separator").eq(lit(content.decimal_separator.as_str()))),
        )?
        .select_columns(&["source_file"])?
        .limit(0, Some(1))?
        .collect()
        .await?;
    Ok(LoadsLookup {
        had_loads_row,
        loaded_as: first_text(&earlier)?,
    })
}

/// Records a new stamp on the path's `loads` row (its content is unchanged).
async fn restamp_loads_row(
    engine: &Engine,
    lake: &Lake,
    source_file: &str,
    stamp: &str,
) -> Result<(), JobError> {
    let loads = engine.ctx().table(Table::Loads.sql_name()).await?;
    let mut columns: Vec<datafusion::prelude::Expr> = loads
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name() != "source_stamp")
        .map(|f| col(f.name()))
        .collect();
    columns.push(lit(stamp).alias("source_stamp"));
    let plan = loads
        .filter(col("source_file").eq(lit(source_file)))?
        .select(columns)?
        .into_unoptimized_plan();
    write_loads_row(engine, lake, source_file, plan).await
}

/// Replaces the path's `loads` row with the rows of `plan` (one or none) in one commit.
async fn write_loads_row(
    engine: &Engine,
    lake: &Lake,
    source_file: &str,
    plan: datafusion::logical_expr::LogicalPlan,
) -> Result<(), JobError> {
    // A load of another file committing its own row at the same time is no reason to fail:
    // delta::write plans the write again on the newer version (bounded). Lakes from before
    // `source_stamp` get the column.
    delta::write(
        lake,
        Table::Loads,
        engine.session(),
        plan,
        WriteMode::ReplaceWhereMergeSchema(col("source_file").eq(lit(source_file))),
    )
    .await?;
    Ok(())
}

/// Replaces the path's `loads` row in one commit: with the new content's row, or with none.
async fn replace_loads_row(
    engine: &Engine,
    lake: &Lake,
    source_file: &str,
    loaded: Option<(&Content, &LoadCounts, Option<&str>)>,
) -> Result<(), JobError> {
    let ctx = engine.ctx();
    let row = match loaded {
        Some((content, counts, stamp)) => {
            let loaded_at = chrono::Utc::now().timestamp_micros();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![source_file.to_string()])),
                Arc::new(StringArray::from(vec![content.hash.clone()])),
                Arc::new(Int64Array::from(vec![counts.rows_read as i64])),
                Arc::new(Int64Array::from(vec![counts.rows_loaded as i64])),
                Arc::new(Int64Array::from(vec![counts.rows_rejected as i64])),
                Arc::new(TimestampMicrosecondArray::from(vec![loaded_at]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec![content.decimal_separator.clone()])),
                Arc::new(StringArray::from(vec![stamp.map(str::to_string)])),
            ];
            RecordBatch::try_new(loads_schema(), columns).map_err(DataFusionError::from)?
        }
        None => RecordBatch::new_empty(loads_schema()),
    };
    let plan = ctx.read_batch(row)?.into_unoptimized_plan();
    write_loads_row(engine, lake, source_file, plan).await
}
