//! Object stores of a cluster node (scheduler or executor).
//!
//! Plans name their files by URL (`s3://bucket/…`, `file:///…`). Each node builds the store
//! for a URL itself, the first time it is asked, from its *own* AWS chain (the EMR instance
//! profile, the node's environment): no credential ever travels with a plan or a `SET`. Every
//! store serves only the node's lake and inputs ([`super::allow`]), whoever opened it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use url::Url;

use super::allow::Allowed;
use super::{S3Connector, S3Options};

/// The stores a node can reach.
pub struct NodeStores {
    /// The node's S3 configuration, or why there is none (e.g. no region on a node that only
    /// reads local folders): reported when a plan first needs S3.
    s3: std::result::Result<S3Connector, String>,
    /// The locations this node may touch.
    allowed: Allowed,
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for NodeStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .stores
            .read()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("NodeStores")
            .field("s3", &self.s3.as_ref().map(|c| c.region().to_string()))
            .field("stores", &keys)
            .finish()
    }
}

impl NodeStores {
    /// Resolves the node's AWS configuration once (at start-up); the node's stores serve only
    /// `allowed`.
    pub async fn from_environment(options: &S3Options, allowed: Allowed) -> Self {
        let s3 = S3Connector::from_chain(options)
            .await
            .map_err(|e| e.to_string());
        if let Err(why) = &s3 {
            tracing::info!("no S3 on this node until configured: {why}");
        }
        tracing::info!(allowed = %allowed.describe(), "this node touches only these locations");
        Self {
            s3,
            allowed,
            stores: RwLock::new(HashMap::new()),
        }
    }

    fn key(url: &Url) -> String {
        format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
    }
}

impl ObjectStoreRegistry for NodeStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        // A store registered by others (delta-rs registers its log store) is limited too.
        let store = self.allowed.guard(url, store);
        self.stores
            .write()
            .ok()
            .and_then(|mut stores| stores.insert(Self::key(url), store))
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .ok()
            .and_then(|mut stores| stores.remove(&Self::key(url)))
            .ok_or_else(|| DataFusionError::Execution(format!("no object store for {url}")))
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        if let Some(store) = self.stores.read().ok().and_then(|s| s.get(&key).cloned()) {
            return Ok(store);
        }
        if !self.allowed.covers_host(url) {
            tracing::warn!(%url, "refused a location outside this node's lake and inputs");
            return Err(DataFusionError::Execution(self.allowed.refusal(url)));
        }
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => Arc::new(LocalFileSystem::new()),
            "s3" | "s3a" => {
                let connector = self.s3.as_ref().map_err(|why| {
                    DataFusionError::Execution(format!("{url} needs S3 on this node: {why}"))
                })?;
                let bucket = url.host_str().unwrap_or_default();
                connector
                    .store(bucket)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?
            }
            other => {
                return Err(DataFusionError::Execution(format!(
                    "no object store for {other}:// URLs on this node (file:// and s3:// are supported)"
                )))
            }
        };
        let store = self.allowed.guard(url, store);
        if let Ok(mut stores) = self.stores.write() {
            stores.insert(key, store.clone());
        }
        Ok(store)
    }
}
