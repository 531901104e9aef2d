//! The lake's Delta tables in a catalog, so Athena, EMR Spark and Glue read them without a
//! crawler: Athena DDL and the analytics rewritten for Athena ([`athena`]), or entries in the
//! Glue Data Catalog ([`glue`]).
//!
//! Both read the lake and never write to it. Both name only tables that have a commit: Athena
//! and Glue refuse, or show as broken, a Delta table whose folder has no `_delta_log` yet.
//! No column list is written anywhere: the engines read the schema and the partitions from
//! each table's Delta log, so a new column needs no catalog change.

pub mod athena;
pub mod glue;

use url::Url;

use crate::storage::{delta, Lake, StorageError, Table};

/// Why a catalog command failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("database name {given:?} is not valid for Athena and Glue: use 1 to 255 lowercase letters, digits and underscores{suggestion}")]
    InvalidDatabase { given: String, suggestion: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the lake at {0} has no tables yet: run `fxpipe load`, `fxpipe ingest` or `fxpipe quickstart` first")]
    EmptyLake(String),
    #[error("no AWS region is configured: set AWS_REGION (or `region` in the profile AWS_PROFILE names); fxpipe does not guess one")]
    NoRegion,
    #[error("Glue {operation} of {target} in {region} failed: {message}; check the AWS credentials (environment, AWS_PROFILE, instance role), the region and endpoint (AWS_REGION, AWS_ENDPOINT_URL), and that they allow glue:{operation}")]
    Glue {
        operation: &'static str,
        target: String,
        region: String,
        message: String,
    },
}

/// A database name both Athena and Glue accept as written: lowercase letters, digits and
/// underscores. Glue lowercases names silently and Athena rejects other characters, so an
/// uppercase or hyphenated name is refused here rather than registered under another spelling.
/// Being that narrow, it can be written into DDL and queries without escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database(String);

impl Database {
    pub fn new(name: &str) -> Result<Self, CatalogError> {
        let valid = |text: &str| {
            !text.is_empty()
                && text.len() <= 255
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if valid(name) {
            return Ok(Self(name.to_string()));
        }
        let fixed = name
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' ', '.'], "_");
        let suggestion = if valid(&fixed) {
            format!(" (e.g. {fixed})")
        } else {
            String::new()
        };
        Err(CatalogError::InvalidDatabase {
            given: name.to_string(),
            suggestion,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The tables a catalog gets, in the order they are printed and registered: the analytics'
/// table first, then the inputs, then the audit tables.
pub const TABLES: [Table; 6] = [
    Table::Processed,
    Table::Transactions,
    Table::Rates,
    Table::RatesErrors,
    Table::Rejects,
    Table::Loads,
];

/// One table of the lake as a catalog sees it.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    pub table: Table,
    /// The table's folder, with a trailing slash (`s3://bucket/prefix/banktxn/processed/`).
    pub location: Url,
    /// Column names of the latest version (from the Delta log).
    pub columns: Vec<String>,
}

/// What the lake holds: the tables with a commit, and those it does not have yet.
#[derive(Debug, Clone)]
pub struct LakeTables {
    pub present: Vec<CatalogTable>,
    pub missing: Vec<Table>,
}

/// Finds the lake's tables (each opened through its Delta log, so a folder without a commit
/// does not count). Fails when the lake has none at all: a catalog of nothing is a mistake,
/// most likely a wrong `--lake`.
pub async fn lake_tables(lake: &Lake) -> Result<LakeTables, CatalogError> {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for table in TABLES {
        if let Some(opened) = delta::open(lake, table).await? {
            let snapshot = opened.snapshot().map_err(|source| StorageError::Delta {
                table: table.sql_name().to_string(),
                source,
            })?;
            let columns = snapshot
                .schema()
                .fields()
                .map(|field| field.name().to_string())
                .collect();
            present.push(CatalogTable {
                table,
                location: lake.table_url(table),
                columns,
            });
        } else {
            missing.push(table);
        }
    }
    if present.is_empty() {
        return Err(CatalogError::EmptyLake(lake.display().to_string()));
    }
    Ok(LakeTables { present, missing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_lowercase_letters_digits_and_underscores() {
        for good in ["fxpipe", "bank_2017", "_raw", "1st"] {
            assert_eq!(
                Database::new(good).map(|d| d.0).ok(),
                Some(good.to_string())
            );
        }
        for bad in [
            "",
            "Fxpipe",
            "bank-db",
            "a.b",
            "a`b",
            "a\"b",
            "a'b",
            "ünï",
            &"x".repeat(256),
        ] {
            assert!(Database::new(bad).is_err(), "{bad:?} accepted");
        }
        let refused = Database::new("Bank-DB").unwrap_err().to_string();
        assert!(refused.contains("(e.g. bank_db)"), "{refused}");
    }

    #[test]
    fn every_table_of_the_lake_is_in_the_catalog_once() {
        for table in Table::ALL {
            assert_eq!(TABLES.iter().filter(|t| **t == table).count(), 1);
        }
    }
}
