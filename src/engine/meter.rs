//! How far the running job has got, for a progress bar: read by the CLI while the job runs.
//!
//! Two sources, whichever the job has: bytes a job's own reader counted (the CSV parser of
//! `load`, against the inputs' sizes), or the live metrics of the physical plan running
//! embedded (`normalize`, and any query through [`super::Engine::collect`]): rows the scans
//! have produced against the rows their files' statistics promise, as datafusion-cli
//! estimates. On a cluster the plan runs elsewhere; the scheduler's task counts stand in (see
//! [`super::progress`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::common::stats::Precision;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::ExecutionPlan;

/// What a reading counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Rows,
}

/// One look at the job's progress; `total` is `None` when it cannot be estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub done: u64,
    pub total: Option<u64>,
    pub unit: Unit,
}

/// Shared between a job (which feeds it) and whoever shows its progress.
#[derive(Debug, Default)]
pub struct Meter {
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    running: Mutex<Option<Arc<Running>>>,
}

/// The plan now running, reduced to what a reading needs: its file scans, and the rows their
/// statistics promise (computed at the first reading, then kept: it never changes).
#[derive(Debug)]
struct Running {
    scans: Vec<Arc<dyn ExecutionPlan>>,
    total: OnceLock<Option<u64>>,
}

impl Meter {
    /// A reader is about to read `total` bytes (0: unknown) in all.
    pub fn expect_bytes(&self, total: u64) {
        self.bytes_done.store(0, Ordering::Relaxed);
        self.bytes_total.store(total, Ordering::Relaxed);
    }

    /// Called by readers as bytes go by.
    pub fn add_bytes(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The physical plan now running (`None` when it ends).
    pub fn set_plan(&self, plan: Option<Arc<dyn ExecutionPlan>>) {
        let running = plan.map(|plan| {
            let mut scans = Vec::new();
            file_scans(&plan, &mut scans);
            Arc::new(Running {
                scans,
                total: OnceLock::new(),
            })
        });
        if let Ok(mut slot) = self.running.lock() {
            *slot = running;
        }
    }

    /// The progress now: the running plan's scans if a plan runs, else the bytes read.
    pub fn reading(&self) -> Option<Reading> {
        let running = self.running.lock().ok().and_then(|slot| slot.clone());
        if let Some(running) = running {
            let done = running
                .scans
                .iter()
                .map(|scan| scan.metrics().and_then(|m| m.output_rows()).unwrap_or(0) as u64)
                .sum();
            let total = *running.total.get_or_init(|| {
                running
                    .scans
                    .iter()
                    .map(|scan| rows_promised(scan.as_ref()))
                    .sum::<Option<u64>>()
                    .filter(|total| *total > 0)
            });
            return Some(Reading {
                done,
                total,
                unit: Unit::Rows,
            });
        }
        let done = self.bytes_done.load(Ordering::Relaxed);
        let total = self.bytes_total.load(Ordering::Relaxed);
        (done > 0 || total > 0).then_some(Reading {
            done,
            total: (total > 0).then_some(total),
            unit: Unit::Bytes,
        })
    }
}

/// The plan's file scans (the leaves that read data).
fn file_scans(node: &Arc<dyn ExecutionPlan>, found: &mut Vec<Arc<dyn ExecutionPlan>>) {
    if node.as_ref().downcast_ref::<DataSourceExec>().is_some() {
        found.push(node.clone());
        return;
    }
    for child in node.children() {
        file_scans(child, found);
    }
}

/// The rows a scan's statistics promise (exact or estimated); `None` when they do not say.
fn rows_promised(scan: &dyn ExecutionPlan) -> Option<u64> {
    match StatisticsContext::new()
        .compute(scan, &StatisticsArgs::new())
        .map(|s| s.num_rows)
    {
        Ok(Precision::Exact(n) | Precision::Inexact(n)) => Some(n as u64),
        _ => None,
    }
}
