//! The jobs: load CSV, normalize to the base currency, run the analytics.
//!
//! Each job takes an [`Engine`](crate::engine::Engine) and a [`Lake`](crate::storage::Lake)
//! and returns a report; none of them prints or knows about the terminal.
//!
//! The rates ingester is a job as well, but lives apart in [`crate::ingest`]: it is also a
//! long-running service (a schedule, a health endpoint, signal handling) over the
//! [`RateSource`](crate::ingest::RateSource) seam, and none of that belongs to the jobs here,
//! which each run one plan to one commit.

pub mod analytics;
pub mod changes;
pub mod load;
pub mod load_tasks;
pub mod normalize;

use crate::ingest::IngestError;
use crate::storage::StorageError;
use crate::transactions::csv::CsvError;

/// Why a job failed. Earlier committed versions of every table are intact whenever this is
/// returned: writes commit last.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Input(crate::storage::inputs::InputError),
    #[error("building a batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("table {0} is empty or missing: {1}")]
    MissingTable(&'static str, &'static str),
    #[error("{count} amounts have no usable rate ({detail}); rerun without --strict to write them as NULL, or ingest the missing rates")]
    Unconverted { count: u64, detail: String },
    #[error("unknown report {0:?}; choose one of: {1}")]
    UnknownReport(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Injected(#[from] crate::faults::InjectedFault),
}

impl JobError {
    /// Whether a commit's outcome could not be learnt: its files may be referenced by a
    /// version, so none may be deleted.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, JobError::Storage(StorageError::OutcomeUnknown { .. }))
    }
}
