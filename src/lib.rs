//! fxpipe: multi-currency bank transactions to one base currency, exactly, on Apache
//! DataFusion with Delta Lake tables.
//!
//! Dependencies point one way: the binary's `cli` → `jobs`, `ingest`, `gen`, `report` → `engine` →
//! `storage`. The three seams are [`engine::Engine`] (DataFusion in this process, or a Ballista
//! cluster), [`storage::Lake`] (a local folder, or S3 and S3-compatible stores) and
//! [`ingest::RateSource`] (Open Exchange Rates, the ECB, or files). The engine knows no job:
//! the plan nodes jobs bring (`load`'s parse node) reach it through [`extensions`], the one
//! place the library assembles them for the client and the cluster's binaries alike.

// Errors carry DataFusion's and delta-rs's (large) errors; they are returned once per job, so
// boxing them would cost clarity and buy nothing.
#![allow(clippy::result_large_err)]

pub mod catalog;
pub mod credit_report;
pub mod engine;
pub mod faults;
pub mod gen;
pub mod ingest;
pub mod jobs;
pub mod money;
pub mod report;
pub mod storage;
pub mod transactions;

/// Every plan node, planner and codec fxpipe adds to DataFusion and Ballista: the engine's own
/// and the jobs'. The client's [`engine::Engine`] and the `fxpipe-scheduler` and
/// `fxpipe-executor` binaries are all handed this, so they encode and decode alike.
pub fn extensions() -> engine::Extensions {
    jobs::load_tasks::extend(engine::Extensions::engine())
}
