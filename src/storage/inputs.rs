//! The files `fxpipe load` reads: local paths, `file://` URLs and `s3://bucket/key`, each
//! possibly a glob (`s3://bank-lake/exports/2024-*.csv`, quoted so the shell leaves it alone).
//!
//! Inputs on S3 are read through the same object store configuration as an S3 lake (the AWS
//! chain, endpoint, retries), streamed: a file is never downloaded to local disk first.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{Lake, S3Connector, S3Options, StorageError};

/// One file to load.
#[derive(Debug, Clone)]
pub struct Input {
    location: Location,
}

#[derive(Debug, Clone)]
enum Location {
    Local(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        bucket: String,
        key: StorePath,
    },
}

/// An input as it travels in a plan to a cluster node, which opens it with its own stores:
/// a path every node sees, or an object of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, serde::Serialize, serde::Deserialize)]
pub enum InputRef {
    Local(PathBuf),
    Object { bucket: String, key: String },
}

/// Errors finding or opening inputs.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("no file matches {0}")]
    NoMatch(String),
    #[error("bad pattern {pattern}: {detail}")]
    BadPattern { pattern: String, detail: String },
    #[error("cannot read {path}: {source}")]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Input {
    /// A local file.
    pub fn local(path: impl Into<PathBuf>) -> Self {
        Self {
            location: Location::Local(path.into()),
        }
    }

    /// How the input is named in messages and errors (`s3://bucket/key` or the path given).
    pub fn display_path(&self) -> PathBuf {
        match &self.location {
            Location::Local(path) => path.clone(),
            Location::Object { bucket, key, .. } => PathBuf::from(format!("s3://{bucket}/{key}")),
        }
    }

    /// How a cluster node names this input.
    pub fn reference(&self) -> InputRef {
        match &self.location {
            Location::Local(path) => InputRef::Local(path.clone()),
            Location::Object { bucket, key, .. } => InputRef::Object {
                bucket: bucket.clone(),
                key: key.to_string(),
            },
        }
    }

    /// The input `reference` names, opened through `store` (the node's store of its bucket)
    /// when it is an object.
    pub fn from_reference(
        reference: &InputRef,
        store: Option<Arc<dyn ObjectStore>>,
    ) -> Option<Self> {
        let location = match reference {
            InputRef::Local(path) => Location::Local(path.clone()),
            InputRef::Object { bucket, key } => Location::Object {
                store: store?,
                bucket: bucket.clone(),
                // The key as `reference` printed it: already a valid path, not to be encoded again.
                key: StorePath::parse(key.as_str()).ok()?,
            },
        };
        Some(Self { location })
    }

    /// The local path, for local inputs.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match &self.location {
            Location::Local(path) => Some(path),
            Location::Object { .. } => None,
        }
    }

    /// The input's size in bytes, for a progress bar; `None` when it cannot be told.
    /// What the input looks like without reading it: its size and modification time (local,
    /// to the nanosecond) or its size and ETag (S3; the modification time when the store
    /// gives no ETag). `None` when it cannot be asked.
    pub async fn stamp(&self) -> Option<String> {
        match &self.location {
            Location::Local(path) => {
                let metadata = std::fs::metadata(path).ok()?;
                let modified = metadata
                    .modified()
                    .ok()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?;
                Some(format!(
                    "size={};mtime={}.{:09}",
                    metadata.len(),
                    modified.as_secs(),
                    modified.subsec_nanos()
                ))
            }
            Location::Object { store, key, .. } => {
                let meta = store.head(key).await.ok()?;
                Some(match meta.e_tag {
                    Some(tag) => format!("size={};etag={tag}", meta.size),
                    None => format!(
                        "size={};modified={}",
                        meta.size,
                        meta.last_modified.to_rfc3339()
                    ),
                })
            }
        }
    }

    pub async fn size(&self) -> Option<u64> {
        match &self.location {
            Location::Local(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            Location::Object { store, key, .. } => store.head(key).await.ok().map(|m| m.size),
        }
    }

    /// Opens the input for reading on a blocking thread (the CSV parser's): a local file, or a
    /// streamed S3 download bridged to `Read` (must be read outside the async runtime).
    pub async fn open(&self) -> Result<Box<dyn Read + Send>, InputError> {
        match &self.location {
            Location::Local(path) => {
                let file = std::fs::File::open(path).map_err(|source| InputError::Local {
                    path: path.clone(),
                    source,
                })?;
                Ok(Box::new(file))
            }
            Location::Object { store, bucket, key } => {
                let got = store.get(key).await.map_err(|source| StorageError::S3 {
                    operation: "get",
                    bucket: bucket.clone(),
                    key: key.to_string(),
                    source,
                })?;
                let stream = got.into_stream().map_err(std::io::Error::other);
                let reader = tokio_util::io::StreamReader::new(stream);
                Ok(Box::new(tokio_util::io::SyncIoBridge::new(reader)))
            }
        }
    }
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// A local path (or `file://` URL), or the files a glob of them matches, sorted.
fn resolve_local(arg: &str) -> Result<Vec<Input>, InputError> {
    let path = arg.strip_prefix("file://").unwrap_or(arg);
    if !is_glob(path) || std::path::Path::new(path).exists() {
        return Ok(vec![Input::local(path)]);
    }
    let bad = |detail: String| InputError::BadPattern {
        pattern: arg.to_string(),
        detail,
    };
    let mut matched: Vec<PathBuf> = glob::glob(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    matched.retain(|p| p.is_file());
    if matched.is_empty() {
        return Err(InputError::NoMatch(arg.to_string()));
    }
    matched.sort();
    Ok(matched.into_iter().map(Input::local).collect())
}

/// The keys of `bucket` a glob of keys matches, sorted; listed only below the pattern's
/// literal folder.
async fn matching_keys(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    key: &str,
    arg: &str,
) -> Result<Vec<StorePath>, InputError> {
    let pattern = glob::Pattern::new(key).map_err(|e| InputError::BadPattern {
        pattern: arg.to_string(),
        detail: e.to_string(),
    })?;
    let literal = &key[..key.find(['*', '?', '[']).unwrap_or(key.len())];
    let folder = literal.rsplit_once('/').map(|(f, _)| f).unwrap_or("");
    let prefix = (!folder.is_empty()).then(|| StorePath::from(folder));
    let matching = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let mut keys = Vec::new();
    let mut listing = store.list(prefix.as_ref());
    while let Some(object) = listing.next().await {
        let object = object.map_err(|source| StorageError::S3 {
            operation: "list",
            bucket: bucket.to_string(),
            key: format!("{folder}/"),
            source,
        })?;
        if pattern.matches_with(object.location.as_ref(), matching) {
            keys.push(object.location);
        }
    }
    if keys.is_empty() {
        return Err(InputError::NoMatch(arg.to_string()));
    }
    keys.sort();
    Ok(keys)
}

/// Resolves the command line's inputs, in order; globs expand to their matches, sorted.
pub async fn resolve(
    args: &[String],
    lake: &Lake,
    options: &S3Options,
) -> Result<Vec<Input>, InputError> {
    let mut connector: Option<S3Connector> = lake.s3().cloned();
    let mut inputs = Vec::new();
    for arg in args {
        let s3 = arg
            .strip_prefix("s3://")
            .or_else(|| arg.strip_prefix("s3a://"));
        let Some(rest) = s3 else {
            inputs.extend(resolve_local(arg)?);
            continue;
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
            return Err(InputError::BadPattern {
                pattern: arg.clone(),
                detail: "expected s3://bucket/key (or a glob of keys)".to_string(),
            });
        }
        let connector = match &connector {
            Some(c) => c.clone(),
            None => {
                let c = S3Connector::from_chain(options).await?;
                connector = Some(c.clone());
                c
            }
        };
        let store = connector.store(bucket)?;
        if !is_glob(key) {
            inputs.push(Input {
                location: Location::Object {
                    store,
                    bucket: bucket.to_string(),
                    key: StorePath::from(key),
                },
            });
            continue;
        }
        let keys = matching_keys(&store, bucket, key, arg).await?;
        inputs.extend(keys.into_iter().map(|key| Input {
            location: Location::Object {
                store: store.clone(),
                bucket: bucket.to_string(),
                key,
            },
        }));
    }
    Ok(inputs)
}
