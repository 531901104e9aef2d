//! What a cluster node may touch: the lake it serves and the input prefixes it was given.
//!
//! A plan names its files by URL, and whoever can submit a plan chooses the URL: without a
//! limit a node would read `file:///etc/fxpipe/ingest.env` or any bucket its IAM role reaches.
//! DataFusion asks a node's registry for a store by scheme and host only, so the limit is on
//! the store itself: every store a node opens is wrapped in [`Guarded`], which refuses any
//! location outside the node's prefixes (reads, listings, writes, deletes), naming it. There
//! is no store at the file system's root: a `file://` location is served only under an
//! allowed folder.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use url::Url;

/// The locations a node may touch: URL prefixes, each ending in `/`.
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    prefixes: Vec<Url>,
}

#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    #[error("--allow / --lake {0:?} is not a file path, file:// URL or s3://bucket/prefix URL")]
    Unusable(String),
    #[error("--allow / --lake {0:?}: the file system's root cannot be allowed; name the folders the cluster reads")]
    Root(String),
}

impl Allowed {
    /// The prefixes of `locations`: local paths (absolute, or relative to the current folder),
    /// `file://` URLs, or `s3://bucket/prefix` (`s3a://` is the same).
    pub fn new<S: AsRef<str>>(locations: &[S]) -> Result<Self, AllowError> {
        let mut prefixes = Vec::new();
        for location in locations {
            let text = location.as_ref().trim();
            let unusable = || AllowError::Unusable(text.to_string());
            let mut url = if text.contains("://") {
                Url::parse(text).map_err(|_| unusable())?
            } else {
                let path = std::path::absolute(text).map_err(|_| unusable())?;
                Url::from_directory_path(&path).map_err(|_| unusable())?
            };
            match url.scheme() {
                "file" => {}
                "s3" | "s3a" => {
                    if url.host_str().unwrap_or_default().is_empty() {
                        return Err(unusable());
                    }
                    let _ = url.set_scheme("s3");
                }
                _ => return Err(unusable()),
            }
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            if url.scheme() == "file" && url.path() == "/" {
                return Err(AllowError::Root(text.to_string()));
            }
            prefixes.push(url);
        }
        Ok(Self { prefixes })
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// The allowed prefixes, as given (normalized), for messages.
    pub fn describe(&self) -> String {
        self.prefixes
            .iter()
            .map(Url::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether any allowed prefix is under `url`'s scheme and host (else no store for it is
    /// even opened).
    pub fn covers_host(&self, url: &Url) -> bool {
        let scheme = if url.scheme() == "s3a" {
            "s3"
        } else {
            url.scheme()
        };
        let host = url.host_str().unwrap_or_default();
        self.prefixes
            .iter()
            .any(|p| p.scheme() == scheme && p.host_str().unwrap_or_default() == host)
    }

    /// Why `url` is refused, in the words of a refused location.
    pub fn refusal(&self, url: &Url) -> String {
        format!(
            "{url} is outside what this cluster node may touch ({}; --lake and --allow of fxpipe-scheduler and fxpipe-executor)",
            self.describe()
        )
    }

    /// `store`, limited to the allowed prefixes under `url`'s scheme and host.
    pub fn guard(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        let scheme = if url.scheme() == "s3a" {
            "s3"
        } else {
            url.scheme()
        };
        let host = url.host_str().unwrap_or_default();
        let prefixes = self
            .prefixes
            .iter()
            .filter(|p| p.scheme() == scheme && p.host_str().unwrap_or_default() == host)
            // Store paths have no leading slash, and are not percent-encoded.
            .map(|p| {
                percent_encoding::percent_decode_str(p.path().trim_start_matches('/'))
                    .decode_utf8_lossy()
                    .to_string()
            })
            .collect();
        Arc::new(Guarded {
            inner: store,
            name: format!("{scheme}://{host}"),
            prefixes,
            allowed: self.describe(),
        })
    }
}

/// A store that serves only locations under its prefixes.
#[derive(Debug, Clone)]
pub struct Guarded {
    inner: Arc<dyn ObjectStore>,
    /// `s3://bucket` or `file://`.
    name: String,
    /// Path prefixes within the store, each ending in `/`.
    prefixes: Vec<String>,
    /// Every allowed prefix of the node, for the message.
    allowed: String,
}

impl std::fmt::Display for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guarded({})", self.inner)
    }
}

impl Guarded {
    fn check(&self, location: &Path) -> Result<()> {
        let path = location.as_ref();
        let inside = self
            .prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()) || path == p.trim_end_matches('/'));
        if inside {
            return Ok(());
        }
        let refused = if self.name == "file://" {
            format!("file:///{path}")
        } else {
            format!("{}/{path}", self.name)
        };
        tracing::warn!(location = %refused, "refused a location outside this node's lake and inputs");
        Err(object_store::Error::PermissionDenied {
            path: refused.clone(),
            source: format!(
                "{refused} is outside what this cluster node may touch ({}; --lake and --allow of fxpipe-scheduler and fxpipe-executor)",
                if self.allowed.is_empty() { "nothing was allowed" } else { &self.allowed }
            )
            .into(),
        })
    }

    fn check_prefix(&self, prefix: Option<&Path>) -> Result<()> {
        match prefix {
            Some(prefix) => self.check(prefix),
            None => self.check(&Path::from("")),
        }
    }
}

#[async_trait]
impl ObjectStore for Guarded {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let guard = self.clone();
        let checked = locations
            .map(move |location| location.and_then(|l| guard.check(&l).map(|()| l)))
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.check_prefix(prefix) {
            Ok(()) => self.inner.list(prefix),
            Err(error) => futures::stream::once(async { Err(error) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.check_prefix(prefix) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(error) => futures::stream::once(async { Err(error) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.check_prefix(prefix)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    fn store(allowed: &Allowed, url: &str) -> Arc<dyn ObjectStore> {
        let url = Url::parse(url).unwrap();
        allowed.guard(&url, Arc::new(object_store::memory::InMemory::new()))
    }

    #[tokio::test]
    async fn only_locations_under_the_prefixes_are_served() {
        let allowed = Allowed::new(&["s3://lake/prod", "/data/exports/"]).unwrap();
        let lake = store(&allowed, "s3://lake");
        lake.put(&Path::from("prod/t/a.parquet"), "x".into())
            .await
            .unwrap();
        assert!(lake.get(&Path::from("prod/t/a.parquet")).await.is_ok());
        for refused in ["production/x", "other/x", "pro"] {
            let error = lake.get(&Path::from(refused)).await.unwrap_err();
            assert!(
                matches!(error, object_store::Error::PermissionDenied { .. }),
                "{refused}: {error}"
            );
        }
        // Another bucket: nothing at all.
        let other = store(&allowed, "s3://other");
        let error = other.get(&Path::from("prod/x")).await.unwrap_err();
        assert!(error.to_string().contains("s3://other/prod/x"), "{error}");
        // Local files: only the folder given; no listing of the root.
        let local = store(&allowed, "file:///");
        let error = local.get(&Path::from("etc/passwd")).await.unwrap_err();
        assert!(error.to_string().contains("file:///etc/passwd"), "{error}");
        assert!(local.list(None).next().await.unwrap().is_err());
        assert!(local
            .list_with_delimiter(Some(&Path::from("data")))
            .await
            .is_err());
        assert!(local
            .list_with_delimiter(Some(&Path::from("data/exports")))
            .await
            .is_ok());
    }

    #[test]
    fn the_root_and_other_schemes_are_refused() {
        assert!(matches!(
            Allowed::new(&["file:///"]),
            Err(AllowError::Root(_))
        ));
        assert!(Allowed::new(&["/"]).is_err());
        assert!(Allowed::new(&["http://x/y"]).is_err());
        assert!(Allowed::new(&["s3:///x"]).is_err());
        let allowed = Allowed::new(&["s3a://b/p"]).unwrap();
        assert_eq!(allowed.describe(), "s3://b/p/");
    }
}
