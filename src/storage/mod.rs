//! Where the lake lives: one [`Lake`] for a local folder, S3, or any S3-compatible store.
//!
//! Everything above this module addresses tables by [`Table`], never by path, so the Hive layout
//! of the PySpark original (kept so existing Athena tables keep working) is decided here once.

pub mod allow;
pub mod compact;
pub mod delta;
pub mod inputs;
pub mod probe;
pub mod registry;
pub mod s3;
pub mod staged;

use std::path::PathBuf;
use std::sync::Arc;

use deltalake::DeltaTableBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

pub use s3::{Addressing, S3Connector, S3Options};

/// What to check when an S3 request fails, by the kind of failure.
fn s3_hint(error: &object_store::Error) -> &'static str {
    let text = error.to_string();
    match error {
        object_store::Error::NotFound { .. } => {
            "the bucket name and prefix (does the bucket exist in this account and region?)"
        }
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            "the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, the instance or task role) and that their policy allows this operation on the bucket"
        }
        _ if has_status(&text, "301") || text.contains("PermanentRedirect") || text.contains("AuthorizationHeaderMalformed") => {
            "the region (AWS_REGION or the profile's region must be the bucket's region)"
        }
        _ if has_status(&text, "403") || text.contains("Forbidden") || text.contains("SignatureDoesNotMatch") || text.contains("InvalidAccessKeyId") => {
            "the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, the instance or task role) and that their policy allows this operation on the bucket"
        }
        _ if text.contains("NoSuchBucket") => "the bucket name (does it exist in this account and region?)",
        _ => "the endpoint (AWS_ENDPOINT_URL / --s3-endpoint), the network path to it, and the region",
    }
}

/// Whether an error text carries the HTTP status `code` as a number of its own. A plain
/// `contains` also matches timings such as `in 106.301463ms` (a flaky wrong hint, seen in CI).
fn has_status(text: &str, code: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|token| token == code)
}

/// Errors locating or using the lake.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot use lake folder {path}: {source}")]
    LocalFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no lake at {0}: check --lake / FXPIPE_LAKE, or create one with `fxpipe quickstart` or `fxpipe load`")]
    NoLake(String),
    #[error("lake location {0:?} is not supported: use a local folder, file:///path or s3://bucket/prefix")]
    Unsupported(String),
    #[error("no AWS region: set AWS_REGION, or `region` in the profile of ~/.aws/config (fxpipe does not assume us-east-1; for MinIO or another S3-compatible store any region its clients use, e.g. us-east-1)")]
    NoRegion,
    #[error("no AWS credentials provider could be configured: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on an instance with a role")]
    NoCredentials,
    #[error("S3 endpoint {0:?} must start with http:// or https://")]
    BadEndpoint(String),
    #[error(
        "S3 {operation} of s3://{bucket}/{key} failed: {source}\n  check: {}",
        s3_hint(source)
    )]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        source: object_store::Error,
    },
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
    #[error("Delta table {table}: the written columns differ from the table's: {detail}")]
    SchemaMismatch { table: String, detail: String },
    #[error("Delta table {table} cannot be read on the cluster: {detail}")]
    Unreadable { table: String, detail: String },
    #[error("Delta table {table}: a commit failed and the log could not be read to learn whether it landed ({detail}); nothing was deleted. Run the command again once the lake answers: it recognises its own commit or makes it, never twice; `fxpipe vacuum` removes files no version needs")]
    OutcomeUnknown { table: String, detail: String },
    #[error("Delta table {table}: other writers kept committing to it first ({attempts} attempts, each planned again on their newest version; the newest is {latest}); this run's change to it was not committed. Run the command again once the other job is done")]
    Contended {
        table: String,
        attempts: u32,
        latest: String,
    },
    #[error("Delta table {table}: version {version} records {key} = {recorded}, and this run writes {written}; rewriting some partitions cannot mix the two (another command may have rewritten the table meanwhile); rewrite the whole table instead")]
    Invariant {
        table: String,
        key: String,
        recorded: String,
        written: String,
        version: u64,
    },
    #[error("Delta table {table}: the data file {path} this run wrote is gone, so it was not committed (was `fxpipe vacuum` run with a retention shorter than this job?); nothing was committed, run the command again")]
    StagedFileMissing { table: String, path: String },
    #[error("Delta table {table}: access to {path} was denied ({source})\n  check: {}{}", s3_hint(source), if path.contains("/_delta_log/") { "; only the client's role commits (deploy/emr/iam-client-policy.json): a cluster node's role may not" } else { "" })]
    Denied {
        table: String,
        path: String,
        source: object_store::Error,
    },
    #[error("Delta table {table}: {source}")]
    Delta {
        table: String,
        source: deltalake::DeltaTableError,
    },
}

impl StorageError {
    /// A delta-rs error on `table`, in fxpipe's words where delta-rs's mislead: a write the
    /// store refused is not "Failed to read delta log object".
    pub(crate) fn delta(table: Table, source: deltalake::DeltaTableError) -> Self {
        let table = table.sql_name().to_string();
        match source {
            deltalake::DeltaTableError::ObjectStore {
                source:
                    source @ (object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }),
            } => {
                let path = match &source {
                    object_store::Error::PermissionDenied { path, .. }
                    | object_store::Error::Unauthenticated { path, .. } => path.clone(),
                    _ => String::new(),
                };
                StorageError::Denied {
                    table,
                    path,
                    source,
                }
            }
            source => StorageError::Delta { table, source },
        }
    }
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

    /// The one command that writes the table: each keeps its rules (rates once per day,
    /// every input row loaded or rejected, processed rebuilt from both), so nothing else may.
    pub fn writer(self) -> &'static str {
        match self {
            Table::Transactions | Table::Rejects | Table::Loads => "fxpipe load",
            Table::Rates | Table::RatesErrors => "fxpipe ingest",
            Table::Processed => "fxpipe normalize",
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
    /// `file:///abs/lake/` or `s3://bucket/prefix/`.
    root: Url,
    /// Rooted at the lake (reports, listings).
    store: Arc<dyn ObjectStore>,
    /// The same storage rooted at the bucket (S3) or at `/` (local): what delta-rs and
    /// DataFusion are given, so every reader and writer shares one client and configuration.
    root_store: Arc<dyn ObjectStore>,
    display: String,
    s3: Option<S3Connector>,
    run: RunId,
}

/// This process's identity in Delta logs: every commit carries an application transaction
/// `(fxpipe-<random>, n)`, so a commit can tell whether it already landed (see
/// [`delta::landed`]) and is never applied twice.
#[derive(Debug, Clone)]
struct RunId {
    app_id: String,
    commits: Arc<std::sync::atomic::AtomicI64>,
    /// The fxpipe command this process runs (`ingest`, `load`, …), recorded in each commit's
    /// commitInfo so a writer that lost a race can say which command came first.
    command: Arc<std::sync::OnceLock<String>>,
}

impl RunId {
    fn new() -> Self {
        Self {
            app_id: format!("fxpipe-{:032x}", rand::random::<u128>()),
            commits: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            command: Arc::default(),
        }
    }
}

impl Lake {
    /// Opens a lake at a local folder or `s3://bucket/prefix`, creating a local folder when
    /// `create` (jobs that write); readers get an error instead, so a mistyped path is not an
    /// empty lake. On S3 the bucket must exist; it is checked here, so a wrong region,
    /// endpoint or credentials fail before any work, with a message saying what to check.
    pub async fn open(location: &str, create: bool, s3: &S3Options) -> Result<Self, StorageError> {
        if let Some(rest) = location
            .strip_prefix("s3://")
            .or_else(|| location.strip_prefix("s3a://"))
        {
            return Self::open_s3(rest, create, s3).await;
        }
        if location.contains("://") && !location.starts_with("file://") {
            return Err(StorageError::Unsupported(location.to_string()));
        }
        let path = PathBuf::from(location.trim_start_matches("file://"));
        let local = |source| StorageError::LocalFolder {
            path: path.clone(),
            source,
        };
        if !create && !path.is_dir() {
            return Err(StorageError::NoLake(path.display().to_string()));
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
            root_store: Arc::new(LocalFileSystem::new()),
            display: absolute.display().to_string(),
            s3: None,
            run: RunId::new(),
        })
    }

    async fn open_s3(rest: &str, create: bool, options: &S3Options) -> Result<Self, StorageError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() {
            return Err(StorageError::Unsupported(format!("s3://{rest}")));
        }
        let connector = S3Connector::from_chain(options).await?;
        let root_store = connector.store(bucket)?;
        let display = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let root = Url::parse(&format!("{display}/"))
            .map_err(|_| StorageError::Unsupported(display.clone()))?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            root_store.clone()
        } else {
            Arc::new(PrefixStore::new(root_store.clone(), prefix))
        };
        // One request that proves bucket, region, endpoint and credentials, and whether a
        // lake is there.
        let listed = store
            .list_with_delimiter(None)
            .await
            .map_err(|source| StorageError::S3 {
                operation: "list",
                bucket: bucket.to_string(),
                key: format!("{prefix}/"),
                source,
            })?;
        if !create && listed.common_prefixes.is_empty() && listed.objects.is_empty() {
            return Err(StorageError::NoLake(display));
        }
        Ok(Self {
            root,
            store,
            root_store,
            display,
            s3: Some(connector),
            run: RunId::new(),
        })
    }

    /// Names the fxpipe command this process runs, for the commitInfo of its commits (the
    /// first name given stays).
    pub fn set_command(&self, command: &str) {
        let _ = self.run.command.set(command.to_string());
    }

    /// The properties of a commit carrying `txn`: the application transaction, and the
    /// command in commitInfo (see [`delta::COMMAND_KEY`]).
    pub fn commit_properties(
        &self,
        txn: &deltalake::kernel::Transaction,
    ) -> deltalake::kernel::transaction::CommitProperties {
        self.commit_properties_with(txn, &[])
    }

    /// [`Lake::commit_properties`] with more entries for commitInfo (e.g. the versions of the
    /// inputs a normalize read).
    pub fn commit_properties_with(
        &self,
        txn: &deltalake::kernel::Transaction,
        info: &[(String, serde_json::Value)],
    ) -> deltalake::kernel::transaction::CommitProperties {
        let command = self.run.command.get().map(|command| {
            (
                delta::COMMAND_KEY.to_string(),
                serde_json::Value::String(command.clone()),
            )
        });
        deltalake::kernel::transaction::CommitProperties::default()
            .with_application_transaction(txn.clone())
            .with_metadata(command.into_iter().chain(info.iter().cloned()))
    }

    /// The application transaction for this run's next commit (unique within the run).
    pub fn next_transaction(&self) -> deltalake::kernel::Transaction {
        let n = self
            .run
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        deltalake::kernel::Transaction::new(&self.run.app_id, n)
    }

    /// The S3 configuration of a lake on S3 (inputs on S3 reuse it).
    pub fn s3(&self) -> Option<&S3Connector> {
        self.s3.as_ref()
    }

    /// The store rooted at the lake.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where the storage root is (`s3://bucket/` or `file:///`) and the store rooted there,
    /// for registering on a DataFusion session.
    pub fn root_store(&self) -> (Url, Arc<dyn ObjectStore>) {
        let mut url = self.root.clone();
        url.set_path("/");
        (url, self.root_store.clone())
    }

    /// delta-rs's view of a table, through the lake's own store.
    pub fn delta_builder(&self, table: Table) -> Result<DeltaTableBuilder, StorageError> {
        let url = self.table_url(table);
        Ok(DeltaTableBuilder::from_url(url.clone())
            .map_err(|source| StorageError::Delta {
                table: table.sql_name().to_string(),
                source,
            })?
            .with_storage_backend(self.root_store.clone(), url))
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

    /// Makes sure a table's folder can be written (local folders must exist for delta-rs;
    /// object stores have no folders).
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

    /// Whether a table has a Delta log (any commit file) in the store.
    pub async fn has_delta_log(&self, table: Table) -> Result<bool, StorageError> {
        use futures::StreamExt;
        let log = StorePath::from(format!("{}/_delta_log", table.path()));
        let first = self.store.list(Some(&log)).next().await;
        match first {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(source)) => Err(self.store_error("list", &format!("{log}/"), source)),
        }
    }

    /// An error of the lake's store, naming bucket and key on S3.
    pub fn store_error(
        &self,
        operation: &'static str,
        relative: &str,
        source: object_store::Error,
    ) -> StorageError {
        match self.root.scheme() {
            "s3" | "s3a" => StorageError::S3 {
                operation,
                bucket: self.root.host_str().unwrap_or_default().to_string(),
                key: format!("{}{relative}", self.root.path().trim_start_matches('/')),
                source,
            },
            _ => StorageError::Store {
                location: self.url_of(relative).to_string(),
                source,
            },
        }
    }

    /// Writes a small object (job reports) atomically: readers see all of it or nothing.
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<String, StorageError> {
        let location = StorePath::from(relative);
        self.store
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(|source| self.store_error("put", relative, source))?;
        Ok(self.url_of(relative).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::has_status;

    #[test]
    fn a_status_is_a_number_of_its_own_not_part_of_a_timing() {
        assert!(has_status(
            "Client error with status 301 Moved Permanently",
            "301"
        ));
        assert!(has_status("status: 403, Forbidden", "403"));
        assert!(!has_status(
            "GET http://x in 106.301463ms, after 1 retries",
            "301"
        ));
        assert!(!has_status("port 14030 refused", "403"));
    }
}
