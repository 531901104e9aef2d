//! Job reports: what each run read, wrote, rejected and could not convert.
//!
//! Every job returns one of these; the CLI prints it and saves it as JSON under
//! `<lake>/_reports/` (a `_` prefix, so Spark, Athena and Delta readers ignore it).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::storage::{Lake, StorageError};
use crate::transactions::csv::LoadCounts;

/// One file of a `load` run.
#[derive(Debug, Clone, Serialize)]
pub struct FileLoad {
    pub source_file: String,
    pub source_hash: String,
    /// `loaded`, or `skipped` when the same content was loaded before.
    pub status: &'static str,
    /// For skipped files: the name the same content was loaded under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_content_as: Option<String>,
    #[serde(flatten)]
    pub counts: LoadCounts,
    /// Rows (loaded and rejected) an earlier load of the same path had, which this one replaced.
    pub rows_replaced: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions_version: Option<i64>,
    pub elapsed_ms: u64,
}

impl FileLoad {
    pub fn loaded(
        source_file: String,
        source_hash: String,
        counts: LoadCounts,
        rows_replaced: u64,
        version: i64,
        elapsed_ms: u64,
    ) -> Self {
        Self {
            source_file,
            source_hash,
            status: "loaded",
            same_content_as: None,
            counts,
            rows_replaced,
            transactions_version: Some(version),
            elapsed_ms,
        }
    }

    /// `orphans_removed`: rows a failed earlier load of the same path had left without a
    /// `loads` row, removed so the content is not counted twice.
    /// A path skipped unread: it looks as it did when it was loaded (size and modification
    /// time, or ETag).
    pub fn unchanged(source_file: String, source_hash: String) -> Self {
        Self {
            source_file,
            source_hash,
            status: "unchanged",
            same_content_as: None,
            counts: LoadCounts::default(),
            rows_replaced: 0,
            transactions_version: None,
            elapsed_ms: 0,
        }
    }

    pub fn skipped(
        source_file: String,
        source_hash: String,
        same_content_as: String,
        orphans_removed: u64,
    ) -> Self {
        Self {
            source_file,
            source_hash,
            status: "skipped",
            same_content_as: Some(same_content_as),
            counts: LoadCounts::default(),
            rows_replaced: orphans_removed,
            transactions_version: None,
            elapsed_ms: 0,
        }
    }
}

/// A `load` run: per file, and totals (rows_read = rows_loaded + rows_rejected).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Rows of earlier loads of the same paths that this run replaced.
    pub rows_replaced: u64,
    pub files: Vec<FileLoad>,
    pub elapsed_ms: u64,
}

impl LoadReport {
    pub fn add(&mut self, file: FileLoad) {
        self.rows_read += file.counts.rows_read;
        self.rows_loaded += file.counts.rows_loaded;
        self.rows_rejected += file.counts.rows_rejected;
        self.rows_replaced += file.rows_replaced;
        for (reason, n) in &file.counts.rejected_by_reason {
            *self
                .rejected_by_reason
                .entry(reason.code().to_string())
                .or_default() += n;
        }
        self.files.push(file);
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load: {} rows read = {} loaded + {} rejected ({} ms)",
            self.rows_read, self.rows_loaded, self.rows_rejected, self.elapsed_ms
        )?;
        for (reason, n) in &self.rejected_by_reason {
            writeln!(f, "  rejected {reason}: {n}")?;
        }
        for file in &self.files {
            if file.status == "unchanged" {
                writeln!(
                    f,
                    "  {}: skipped unread, unchanged since it was loaded (size and modification time or ETag; --verify reads it)",
                    file.source_file
                )?;
                continue;
            }
            match &file.same_content_as {
                Some(earlier) => {
                    write!(
                        f,
                        "  {}: skipped, same content already loaded as {earlier}",
                        file.source_file
                    )?;
                    if file.rows_replaced > 0 {
                        write!(
                            f,
                            "; removed {} rows a failed earlier load of this path left",
                            file.rows_replaced
                        )?;
                    }
                    writeln!(f)?
                }
                None => {
                    write!(
                        f,
                        "  {}: {} read, {} loaded, {} rejected (transactions v{})",
                        file.source_file,
                        file.counts.rows_read,
                        file.counts.rows_loaded,
                        file.counts.rows_rejected,
                        file.transactions_version.unwrap_or_default()
                    )?;
                    if file.rows_replaced > 0 {
                        write!(
                            f,
                            "; replaced {} rows of an earlier load of this path",
                            file.rows_replaced
                        )?;
                    }
                    writeln!(f)?
                }
            }
        }
        Ok(())
    }
}

/// A `normalize` run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NormalizeReport {
    pub base_currency: String,
    pub max_rate_age_days: u32,
    pub rows_in: u64,
    pub rows_written: u64,
    pub withdrawals: u64,
    pub withdrawals_converted: u64,
    pub deposits: u64,
    pub deposits_converted: u64,
    /// Amounts converted with an earlier day's rate (no rate on the value date itself).
    pub converted_with_earlier_rate: u64,
    /// Amounts left NULL because no rate within `max_rate_age_days`, by currency.
    pub unconverted_by_currency: BTreeMap<String, u64>,
    pub unconverted: u64,
    pub partitions_written: Vec<String>,
    /// Data files the write tasks wrote and this run committed.
    pub files_written: u64,
    /// Tasks the write ran as (in this process, or on the cluster's executors).
    pub write_tasks: u64,
    /// Months a write task wrote through a local spill file because it already had
    /// `--max-open-files` open (summed over the tasks).
    pub partitions_spilled: u64,
    /// Times the write was submitted again after an executor loss left its results
    /// unreconciled (see `normalize::write_reconciled`).
    pub write_resubmissions: u64,
    pub processed_version: i64,
    pub stage_ms: BTreeMap<&'static str, u64>,
    /// The input versions this run read.
    pub transactions_version: i64,
    pub rates_version: i64,
    /// `--changed`: nothing changed since the last normalize, and nothing was written.
    pub up_to_date: bool,
    /// `--changed`: the months recomputed, each with why (new files, rate days).
    pub months_recomputed: BTreeMap<String, Vec<String>>,
    /// `--changed`: why the whole table was recomputed.
    pub recomputed_because: Option<String>,
}

impl fmt::Display for NormalizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.up_to_date {
            return writeln!(
                f,
                "normalize: processed is up to date with transactions v{} and rates v{} (nothing written)",
                self.transactions_version, self.rates_version
            );
        }
        if let Some(reason) = &self.recomputed_because {
            writeln!(f, "normalize: the whole table is recomputed: {reason}")?;
        }
        if !self.months_recomputed.is_empty() {
            writeln!(
                f,
                "normalize: {} months recomputed (transactions v{}, rates v{}):",
                self.months_recomputed.len(),
                self.transactions_version,
                self.rates_version
            )?;
            for (month, why) in &self.months_recomputed {
                writeln!(f, "  {month}: {}", why.join(", "))?;
            }
        }
        writeln!(
            f,
            "normalize: {} rows in, {} rows written to {} partitions (processed v{})",
            self.rows_in,
            self.rows_written,
            self.partitions_written.len(),
            self.processed_version
        )?;
        writeln!(f, "  withdrawals converted to {}: {}/{}; deposits: {}/{}; {} with an earlier day's rate (max age {} days)", self.base_currency, self.withdrawals_converted, self.withdrawals, self.deposits_converted, self.deposits, self.converted_with_earlier_rate, self.max_rate_age_days)?;
        if self.write_resubmissions > 0 {
            writeln!(
                f,
                "  written again {} time(s): an executor was lost and the first results did not reconcile",
                self.write_resubmissions
            )?;
        }
        if self.unconverted > 0 {
            writeln!(f, "  NOT converted (no rate): {}", self.unconverted)?;
            for (currency, n) in &self.unconverted_by_currency {
                writeln!(f, "    {currency}: {n}")?;
            }
        }
        let stages: Vec<String> = self
            .stage_ms
            .iter()
            .map(|(k, v)| format!("{k} {v} ms"))
            .collect();
        writeln!(f, "  time: {}", stages.join(", "))
    }
}

/// One failed date of an `ingest` run.
#[derive(Debug, Clone, Serialize)]
pub struct IngestFailure {
    pub date: String,
    pub status: i32,
    pub message: String,
}

/// An `ingest` run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub source: String,
    pub base_currency: String,
    pub dates_requested: u64,
    /// Dates already stored, not fetched again (without `--force`).
    pub dates_skipped: u64,
    pub dates_ingested: u64,
    /// Dates the source publishes no rates for (the ECB on weekends and holidays).
    pub dates_not_published: u64,
    pub rate_rows: u64,
    pub failures: Vec<IngestFailure>,
    /// Commits made (each a batch of days: rates and their error rows).
    pub batches: u64,
    pub rates_version: Option<i64>,
    /// Retries by HTTP status (0: connection errors and timeouts).
    pub retries: std::collections::BTreeMap<i32, u64>,
    /// Why the run stopped early (a rejected key, a stop signal), if it did.
    pub stopped: Option<String>,
    pub elapsed_ms: u64,
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ingest from {}: {}/{} dates, {} rates (base {}), {} failed, {} already stored, {} not published ({} ms)",
            self.source,
            self.dates_ingested,
            self.dates_requested,
            self.rate_rows,
            self.base_currency,
            self.failures.len(),
            self.dates_skipped,
            self.dates_not_published,
            self.elapsed_ms
        )?;
        if let Some(why) = &self.stopped {
            writeln!(f, "  stopped early: {why}")?;
        }
        for failure in self.failures.iter().take(20) {
            writeln!(
                f,
                "  {}: {} {}",
                failure.date, failure.status, failure.message
            )?;
        }
        if self.failures.len() > 20 {
            writeln!(
                f,
                "  … {} more in the rates_errors table",
                self.failures.len() - 20
            )?;
        }
        Ok(())
    }
}

/// Saves a report as JSON under `_reports/<job>-<UTC timestamp>.json`; returns its location.
pub async fn save(lake: &Lake, job: &str, report: &impl Serialize) -> Result<String, StorageError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let body = serde_json::to_vec_pretty(report).unwrap_or_default();
    lake.put(&format!("_reports/{job}-{stamp}.json"), body)
        .await
}

/// The reports [`longest_run`] reads at most (the newest; a lake's first years of daily runs
/// say nothing about how long today's jobs take).
const RUNS_CONSIDERED: usize = 1000;

/// How long the longest of the lake's recent job runs took, from their saved reports (`None`
/// when none was saved). `vacuum` keeps files younger than that: a running job's staged files
/// are no older than its run, and deleting them breaks its commit.
pub async fn longest_run(lake: &Lake) -> Result<Option<std::time::Duration>, StorageError> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let prefix = object_store::path::Path::from("_reports");
    let mut objects: Vec<object_store::ObjectMeta> = lake
        .store()
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| lake.store_error("list", "_reports/", source))?;
    objects.sort_by_key(|object| std::cmp::Reverse(object.last_modified));
    let mut longest: Option<u64> = None;
    for object in objects.iter().take(RUNS_CONSIDERED) {
        let relative = object.location.to_string();
        let error = |source| lake.store_error("get", &relative, source);
        let got = lake.store().get(&object.location).await.map_err(error)?;
        let bytes = got.bytes().await.map_err(error)?;
        let Ok(report) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let took = report["elapsed_ms"]
            .as_u64()
            .or_else(|| report["stage_ms"]["total"].as_u64());
        longest = longest.max(took);
    }
    Ok(longest.map(std::time::Duration::from_millis))
}
