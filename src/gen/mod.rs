//! Deterministic sample data: Open-Exchange-Rates-format files and bank-transaction CSV
//! exports with the quirks of real ones, for demos, tests and benchmarks.

pub mod currencies;
pub mod rates;
pub mod transactions;

/// Why sample data could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("--from {from} is after --to {to}")]
    EmptyRange {
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    },
    #[error("{0}")]
    Invalid(String),
}
