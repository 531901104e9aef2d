//! Where the lake lives: one [`Lake`] for a local folder today and an object store (S3) next.
//!
//! Everything above this module addresses tables by [`Table`], never by path, so the Hive layout
//! of the PySpark original (kept so existing Athena tables keep working) is decided here once.

pub mod delta;
pub mod staged;

use std::path::PathBuf;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

/// Errors locating or using the lake.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot use lake folder {path}: {source}")]
    LocalFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no lake at {0}: check --lake / FXPIPE_LAKE, or create one with `fxpipe quickstart` or `fxpipe load`")]
    NoLake(PathBuf),
    #[error("lake location {0:?} is not supported yet: use a local folder (S3 support is on the roadmap)")]
    Unsupported(String),
    #[error("object store error at {location}: {source}")]
    Store {
        location: String,
        source: object_store::Error,
    },
    #[error("Delta table {table}: a data file holds rows with {column} = {value:?} and other rows, so those rows cannot be replaced by file; was the table rewritten by another tool?")]
    MixedFiles {
        table: String,
        column: String,
        value: String,
    },
    #[error("Delta table {table}: {source}")]
    Delta {
        table: String,
        source: deltalake::DeltaTableError,
    },
}

/// The tables of the lake, with the locations of the original PySpark/Athena layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Typed bank transactions (`fxpipe load`).
    Transactions,
    /// Input rows that could not be loaded, with file, line, raw text and reason.
    Rejects,
    /// One row per loaded source file: its content hash makes re-loads idempotent.
    Loads,
    /// Daily exchange rates (`fxpipe ingest`).
    Rates,
    /// Rate fetches that failed, with the source's error body.
    RatesErrors,
    /// Transactions converted to the base currency (`fxpipe normalize`).
    Processed,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Transactions,
        Table::Rejects,
        Table::Loads,
        Table::Rates,
        Table::RatesErrors,
        Table::Processed,
    ];

    /// The name queries use (`fxpipe sql`).
    pub fn sql_name(self) -> &'static str {
        match self {
            Table::Transactions => "transactions",
            Table::Rejects => "rejects",
            Table::Loads => "loads",
            Table::Rates => "rates",
            Table::RatesErrors => "rates_errors",
            Table::Processed => "processed",
        }
    }

    /// Location under the lake root (the original's layout).
    pub fn path(self) -> &'static str {
        match self {
            Table::Transactions => "banktxn/parquet",
            Table::Rejects => "banktxn/rejects",
            Table::Loads => "banktxn/loads",
            Table::Rates => "api_response/response",
            Table::RatesErrors => "error_temp_dir/error_error",
            Table::Processed => "banktxn/processed",
        }
    }

    /// Hive partition columns (`year=YYYY/month=M`), empty for flat tables.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            Table::Rates | Table::Processed => &["year", "month"],
            _ => &[],
        }
    }
}

/// A lake root and the object store that holds it.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    store: Arc<dyn ObjectStore>,
    display: String,
}

impl Lake {
    /// Opens a lake at a local folder, creating it when `create` (jobs that write); readers
    /// get an error instead, so a mistyped path is not an empty lake. `s3://` comes with the
    /// S3 work.
    pub fn open(location: &str, create: bool) -> Result<Self, StorageError> {
        if location.contains("://") && !location.starts_with("file://") {
            return Err(StorageError::Unsupported(location.to_string()));
        }
        let path = PathBuf::from(location.trim_start_matches("file://"));
        let local = |source| StorageError::LocalFolder {
            path: path.clone(),
            source,
        };
        if !create && !path.is_dir() {
            return Err(StorageError::NoLake(path));
        }
        std::fs::create_dir_all(&path).map_err(local)?;
        let absolute = std::fs::canonicalize(&path).map_err(local)?;
        let root = Url::from_directory_path(&absolute)
            .map_err(|_| local(std::io::Error::other("not an absolute path")))?;
        let store =
            LocalFileSystem::new_with_prefix(&absolute).map_err(|source| StorageError::Store {
                location: absolute.display().to_string(),
                source,
            })?;
        Ok(Self {
            root,
            store: Arc::new(store),
            display: absolute.display().to_string(),
        })
    }

    /// Human-readable location for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// URL of a table's folder.
    pub fn table_url(&self, table: Table) -> Url {
        self.url_of(&format!("{}/", table.path()))
    }

    /// URL of any path under the root.
    pub fn url_of(&self, relative: &str) -> Url {
        // The root is a directory URL and `relative` is a fixed layout path, so joining is total.
        self.root
            .join(relative)
            .unwrap_or_else(|_| self.root.clone())
    }

    /// Makes sure a table's folder can be written (local folders must exist for delta-rs).
    pub fn prepare_table(&self, table: Table) -> Result<Url, StorageError> {
        let url = self.table_url(table);
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path).map_err(|source| StorageError::LocalFolder {
                path: path.clone(),
                source,
            })?;
        }
        Ok(url)
    }

    /// Writes a small object (job reports) atomically: readers see all of it or nothing.
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<String, StorageError> {
        let location = StorePath::from(relative);
        self.store
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(|source| StorageError::Store {
                location: relative.to_string(),
                source,
            })?;
        Ok(self.url_of(relative).to_string())
    }
}
