//! fxpipe: multi-currency bank transactions to one base currency, exactly, on Apache
//! DataFusion with Delta Lake tables.
//!
//! Dependencies point one way: the binary's `cli` → `jobs`, `ingest`, `gen`, `report` → `engine` →
//! `storage`. The three seams the roadmap grows through are [`engine::Engine`] (embedded
//! DataFusion, then Ballista), [`storage::Lake`] (local folder, then S3) and
//! [`ingest::RateSource`] (files, then the HTTP API).

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
