//! How far the running job has got, for a progress bar: read by the CLI while the job runs.
//!
//! Two sources, whichever the job has: bytes a job's own reader counted (the CSV parser of
//! `load`, against the inputs' sizes), or the live metrics of the physical plan running
//! embedded (`normalize`, and any query through [`super::Engine::collect`]): rows the scans
//! have produced against the rows their files' statistics promise, as datafusion-cli
//! estimates. On a cluster the plan runs elsewhere; the scheduler's task counts stand in (see
//! [`super::progress`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    plan: Mutex<Option<Arc<dyn ExecutionPlan>>>,
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
        if let Ok(mut slot) = self.plan.lock() {
            *slot = plan;
        }
    }

    /// The progress now: the running plan's scans if a plan runs, else the bytes read.
    pub fn reading(&self) -> Option<Reading> {
        let plan = self.plan.lock().ok().and_then(|slot| slot.clone());
        if let Some(plan) = plan {
            let mut scans = Scans::default();
            scans.visit(plan.as_ref());
            return Some(Reading {
                done: scans.rows,
                total: scans.known.then_some(scans.total).filter(|t| *t > 0),
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

/// Rows the plan's file scans produced so far, and the rows their statistics promise.
#[derive(Default)]
struct Scans {
    rows: u64,
    total: u64,
    /// Every scan's row count is known (exact or estimated).
    known: bool,
    seen: bool,
}

impl Scans {
    fn visit(&mut self, node: &dyn ExecutionPlan) {
        if node.downcast_ref::<DataSourceExec>().is_some() {
            if !self.seen {
                self.seen = true;
                self.known = true;
            }
            self.rows += node.metrics().and_then(|m| m.output_rows()).unwrap_or(0) as u64;
            let statistics = StatisticsContext::new().compute(node, &StatisticsArgs::new());
            match statistics.map(|s| s.num_rows) {
                Ok(Precision::Exact(n) | Precision::Inexact(n)) => self.total += n as u64,
                _ => self.known = false,
            }
            return;
        }
        for child in node.children() {
            self.visit(child.as_ref());
        }
    }
}
