//! S3 (and S3-compatible stores: MinIO, Ceph, moto) through object_store's `AmazonS3`, with
//! credentials and region from the standard AWS chain.
//!
//! object_store has its own, smaller credential chain and silently assumes `us-east-1` when no
//! region is set; delta-rs uses aws-config only when no endpoint is given. Users expect what the
//! AWS CLI does, so fxpipe resolves everything once through aws-config (environment, shared
//! config and credentials files with profiles and SSO, web identity, ECS and EC2 instance
//! metadata) and builds every store from that: one configuration, whoever reads or writes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::{BackoffConfig, ClientOptions, CredentialProvider, ObjectStore, RetryConfig};

use super::StorageError;

/// Credentials are renewed this long before they expire, so a request and its retries (bounded
/// by the retry timeout, 2 minutes) are always signed with credentials that are still valid.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How requests address a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Addressing {
    /// Virtual-hosted (`bucket.s3.region.amazonaws.com`) on AWS; path-style on a custom
    /// endpoint (MinIO, Ceph and moto are usually reached by IP or a single host name) and for
    /// bucket names with dots (which TLS certificates of virtual hosts do not cover).
    #[default]
    Auto,
    /// `endpoint/bucket/key`.
    Path,
    /// `bucket.endpoint/key`.
    Virtual,
}

/// How to reach S3: what the command line and environment say beyond the AWS chain.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// An S3-compatible endpoint (`--s3-endpoint`); otherwise `AWS_ENDPOINT_URL_S3` or
    /// `AWS_ENDPOINT_URL` (read by aws-config, also from a profile's `endpoint_url`).
    pub endpoint: Option<String>,
    pub addressing: Addressing,
    /// Timeout of one request (connecting has its own 5 s).
    pub request_timeout: Duration,
    /// Retries of one failed request (5xx incl. 503 SlowDown, 429, 408, dropped connections,
    /// and timeouts of idempotent requests), with exponential backoff.
    pub max_retries: usize,
    /// No retry starts after this long since the first attempt.
    pub retry_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            addressing: Addressing::Auto,
            request_timeout: Duration::from_secs(30),
            max_retries: 10,
            retry_timeout: Duration::from_secs(120),
        }
    }
}

impl S3Options {
    /// The options from `FXPIPE_S3_*` environment variables (cluster nodes, which have no
    /// fxpipe command line), with the defaults the CLI has.
    pub fn from_env() -> Self {
        let number = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let defaults = Self::default();
        Self {
            endpoint: std::env::var("FXPIPE_S3_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty()),
            addressing: match std::env::var("FXPIPE_S3_ADDRESSING").as_deref() {
                Ok("path") => Addressing::Path,
                Ok("virtual") => Addressing::Virtual,
                _ => Addressing::Auto,
            },
            request_timeout: number("FXPIPE_S3_TIMEOUT")
                .map(Duration::from_secs)
                .unwrap_or(defaults.request_timeout),
            max_retries: number("FXPIPE_S3_RETRIES")
                .map(|n| n as usize)
                .unwrap_or(defaults.max_retries),
            retry_timeout: number("FXPIPE_S3_RETRY_TIMEOUT")
                .map(Duration::from_secs)
                .unwrap_or(defaults.retry_timeout),
        }
    }
}

/// The AWS configuration resolved once per process; builds a store per bucket.
#[derive(Clone)]
pub struct S3Connector {
    region: String,
    endpoint: Option<String>,
    options: S3Options,
    credentials: Arc<ChainCredentials>,
}

impl std::fmt::Debug for S3Connector {
    // Never the credentials: only where requests go.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Connector")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl S3Connector {
    /// Resolves region, endpoint and credentials through the standard AWS chain.
    pub async fn from_chain(options: &S3Options) -> Result<Self, StorageError> {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or(StorageError::NoRegion)?;
        let endpoint = endpoint_of(options, &config).map(|(endpoint, _)| endpoint);
        if let Some(endpoint) = &endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(StorageError::BadEndpoint(endpoint.clone()));
            }
        }
        let provider = config
            .credentials_provider()
            .ok_or(StorageError::NoCredentials)?;
        Ok(Self {
            region,
            endpoint,
            options: options.clone(),
            credentials: Arc::new(ChainCredentials::new(provider)),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// A store rooted at a bucket.
    pub fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
        let virtual_hosted = match self.options.addressing {
            Addressing::Path => false,
            Addressing::Virtual => true,
            Addressing::Auto => self.endpoint.is_none() && !bucket.contains('.'),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&self.region)
            .with_credentials(self.credentials.clone())
            .with_virtual_hosted_style_request(virtual_hosted)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(15),
                    base: 2.0,
                },
                max_retries: self.options.max_retries,
                retry_timeout: self.options.retry_timeout,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(self.options.request_timeout)
                    .with_connect_timeout(Duration::from_secs(5)),
            );
        let endpoint = match (&self.endpoint, virtual_hosted) {
            (None, _) => None,
            (Some(endpoint), false) => Some(endpoint.clone()),
            // object_store wants the bucket in a virtual-hosted endpoint.
            (Some(endpoint), true) => Some(match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
                None => endpoint.clone(),
            }),
        };
        if let Some(endpoint) = endpoint {
            // Plain HTTP only when the endpoint itself says so.
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|source| StorageError::S3 {
            operation: "configure",
            bucket: bucket.to_string(),
            key: String::new(),
            source,
        })?;
        Ok(Arc::new(store))
    }
}

/// Where the S3 endpoint came from (see [`S3Options::endpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointSource {
    /// `--s3-endpoint` or `FXPIPE_S3_ENDPOINT` (the caller knows which).
    Options,
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`.
    Environment(&'static str),
    /// The profile's `endpoint_url` in the shared config file.
    Profile,
}

/// The endpoint requests go to, first match wins: the options, `AWS_ENDPOINT_URL_S3`,
/// aws-config's (`AWS_ENDPOINT_URL`, else the profile's `endpoint_url`); `None` is AWS itself.
fn endpoint_of(
    options: &S3Options,
    config: &aws_config::SdkConfig,
) -> Option<(String, EndpointSource)> {
    let variable = |name: &'static str| {
        std::env::var(name)
            .ok()
            .map(|value| (value, EndpointSource::Environment(name)))
    };
    options
        .endpoint
        .clone()
        .map(|e| (e, EndpointSource::Options))
        .or_else(|| variable("AWS_ENDPOINT_URL_S3"))
        .or_else(|| {
            let url = config.endpoint_url()?.to_string();
            Some(match std::env::var("AWS_ENDPOINT_URL") {
                Ok(value) if value == url => (url, EndpointSource::Environment("AWS_ENDPOINT_URL")),
                _ => (url, EndpointSource::Profile),
            })
        })
        .filter(|(e, _)| !e.trim().is_empty())
        .map(|(e, source)| (e.trim().trim_end_matches('/').to_string(), source))
}

/// Where the standard AWS chain found a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainSource {
    /// An environment variable, by name.
    Environment(&'static str),
    /// The shared config or credentials files, under this profile.
    Profile(String),
    /// EC2 instance metadata (IMDS).
    InstanceMetadata,
}

impl std::fmt::Display for ChainSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainSource::Environment(variable) => write!(f, "env {variable}"),
            ChainSource::Profile(name) => write!(f, "profile {name}"),
            ChainSource::InstanceMetadata => f.write_str("instance metadata"),
        }
    }
}

/// Which provider of the chain gave the credentials: a name, never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    Environment,
    /// Static keys of a profile in `~/.aws/credentials` or `~/.aws/config`.
    Profile(String),
    /// A profile's SSO session.
    Sso(String),
    /// A profile's `credential_process`.
    Process(String),
    /// A role assumed through STS (a profile's `role_arn`).
    AssumedRole(String),
    /// A web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE`, EKS).
    WebIdentity,
    /// The ECS task role (or another container credentials endpoint).
    Container,
    /// The EC2 instance role (IMDS).
    InstanceMetadata,
    /// A provider aws-config added after this was written.
    Other,
}

impl CredentialSource {
    /// The short name for machine-readable output.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSource::Environment => "environment",
            CredentialSource::Profile(_) => "profile",
            CredentialSource::Sso(_) => "sso",
            CredentialSource::Process(_) => "credential_process",
            CredentialSource::AssumedRole(_) => "assume_role",
            CredentialSource::WebIdentity => "web_identity",
            CredentialSource::Container => "container",
            CredentialSource::InstanceMetadata => "instance_metadata",
            CredentialSource::Other => "other",
        }
    }

    /// From the features aws-config records on the credentials it returns (its business
    /// metrics; the only public record of which provider answered).
    fn of(credentials: &aws_credential_types::Credentials) -> Self {
        use aws_credential_types::credential_feature::AwsCredentialFeature as F;
        let profile = || std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_string());
        let features = credentials
            .get_property::<Vec<F>>()
            .cloned()
            .unwrap_or_default();
        let has = |wanted: &[F]| features.iter().any(|f| wanted.contains(f));
        if has(&[F::CredentialsEnvVars]) {
            CredentialSource::Environment
        } else if has(&[
            F::CredentialsEnvVarsStsWebIdToken,
            F::CredentialsStsAssumeRoleWebId,
            F::CredentialsProfileStsWebIdToken,
        ]) {
            CredentialSource::WebIdentity
        } else if has(&[F::CredentialsSso, F::CredentialsProfileSso]) {
            CredentialSource::Sso(profile())
        } else if has(&[F::CredentialsProcess, F::CredentialsProfileProcess]) {
            CredentialSource::Process(profile())
        } else if has(&[F::CredentialsStsAssumeRole]) {
            CredentialSource::AssumedRole(profile())
        } else if has(&[F::CredentialsHttp]) {
            CredentialSource::Container
        } else if has(&[F::CredentialsImds]) {
            CredentialSource::InstanceMetadata
        } else if has(&[
            F::CredentialsProfile,
            F::CredentialsProfileSourceProfile,
            F::CredentialsProfileNamedProvider,
        ]) {
            CredentialSource::Profile(profile())
        } else {
            CredentialSource::Other
        }
    }
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Environment => {
                f.write_str("environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
            }
            CredentialSource::Profile(name) => {
                write!(f, "profile {name} (shared credentials or config file)")
            }
            CredentialSource::Sso(name) => write!(f, "SSO of profile {name}"),
            CredentialSource::Process(name) => write!(f, "credential_process of profile {name}"),
            CredentialSource::AssumedRole(name) => write!(f, "role assumed by profile {name}"),
            CredentialSource::WebIdentity => f.write_str("web identity token"),
            CredentialSource::Container => f.write_str("container credentials (ECS task role)"),
            CredentialSource::InstanceMetadata => f.write_str("instance metadata (EC2 role)"),
            CredentialSource::Other => f.write_str("the AWS chain"),
        }
    }
}

/// What the standard AWS chain resolves, and from where, without any credential: for
/// `fxpipe doctor`. Each part is independent, so one missing setting does not hide the others.
#[derive(Debug)]
pub struct ChainReport {
    pub region: Option<(String, ChainSource)>,
    pub endpoint: Option<(String, EndpointSource)>,
    /// The provider that answered, or why none did (the chain's message names the providers
    /// it tried, never a secret).
    pub credentials: Result<CredentialSource, String>,
}

/// Resolves the chain as [`S3Connector::from_chain`] does and asks it for credentials once.
/// Unbounded in time where the chain is (instance metadata): callers add a timeout.
pub async fn inspect_chain(options: &S3Options) -> ChainReport {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let region = match config.region() {
        None => None,
        Some(region) => {
            let value = region.to_string();
            let from_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .into_iter()
                .find(|v| std::env::var(v).is_ok_and(|r| r.trim() == value));
            let source = match from_env {
                Some(variable) => ChainSource::Environment(variable),
                None if aws_config::meta::region::ProvideRegion::region(
                    &aws_config::profile::region::ProfileFileRegionProvider::new(),
                )
                .await
                .is_some() =>
                {
                    ChainSource::Profile(
                        std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_string()),
                    )
                }
                None => ChainSource::InstanceMetadata,
            };
            Some((value, source))
        }
    };
    let credentials = match config.credentials_provider() {
        None => Err("no credentials provider is configured".to_string()),
        Some(provider) => provider
            .provide_credentials()
            .await
            .map(|c| CredentialSource::of(&c))
            .map_err(|e| error_chain(&e)),
    };
    ChainReport {
        region,
        endpoint: endpoint_of(options, &config),
        credentials,
    }
}

/// object_store's view of the aws-config credential chain, cached until shortly before the
/// credentials expire (the chain itself does not cache: SDK clients do that in a layer above).
struct ChainCredentials {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl ChainCredentials {
    fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for ChainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainCredentials(aws-config default chain)")
    }
}

/// Why the chain gave no credentials (its message names the providers tried, never a secret).
#[derive(Debug, thiserror::Error)]
#[error("no AWS credentials from the standard chain (environment, AWS_PROFILE and ~/.aws files, SSO, web identity, ECS, EC2 instance role): {0}")]
struct CredentialsUnavailable(String);

#[async_trait::async_trait]
impl CredentialProvider for ChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|expiry| {
                expiry
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_MARGIN)
            });
            if fresh {
                return Ok(credential.clone());
            }
        }
        let provided = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(CredentialsUnavailable(error_chain(&e))),
            }
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: provided.access_key_id().to_string(),
            secret_key: provided.secret_access_key().to_string(),
            token: provided.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), provided.expiry()));
        Ok(credential)
    }
}

/// A credentials error with all its causes (the outer one is often just "an error occurred").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_form_names_no_secret() {
        let credentials = aws_credential_types::Credentials::from_keys(
            "AKIAEXAMPLE",
            "very-secret-key",
            Some("session-token".into()),
        );
        let chain = ChainCredentials::new(SharedCredentialsProvider::new(credentials));
        let connector = S3Connector {
            region: "eu-west-1".into(),
            endpoint: None,
            options: S3Options::default(),
            credentials: Arc::new(chain),
        };
        let store = connector.store("bank-lake").expect("a store");
        let shown = format!("{connector:?} {store:?}");
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(!shown.contains("session-token"), "{shown}");
        assert!(shown.contains("eu-west-1"), "{shown}");
    }

    #[test]
    fn the_credential_source_is_read_from_the_features_the_chain_records() {
        use aws_credential_types::credential_feature::AwsCredentialFeature as F;
        let with = |features: &[F]| {
            let mut credentials =
                aws_credential_types::Credentials::from_keys("AKIAEXAMPLE", "secret", None);
            credentials
                .get_property_mut_or_default::<Vec<F>>()
                .extend(features.iter().cloned());
            CredentialSource::of(&credentials)
        };
        assert_eq!(
            with(&[F::CredentialsEnvVars]),
            CredentialSource::Environment
        );
        assert_eq!(
            with(&[F::CredentialsImds]),
            CredentialSource::InstanceMetadata
        );
        assert_eq!(with(&[F::CredentialsHttp]), CredentialSource::Container);
        assert!(matches!(
            with(&[F::CredentialsSso, F::CredentialsProfile]),
            CredentialSource::Sso(_)
        ));
        assert!(matches!(
            with(&[F::CredentialsProfile]),
            CredentialSource::Profile(_)
        ));
        assert_eq!(with(&[]), CredentialSource::Other);
        let shown = format!("{} {:?}", with(&[F::CredentialsEnvVars]), with(&[]));
        assert!(
            !shown.contains("AKIAEXAMPLE") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn credentials_are_cached_until_shortly_before_they_expire() {
        #[derive(Debug)]
        struct Counting(std::sync::atomic::AtomicUsize, Option<SystemTime>);
        impl ProvideCredentials for Counting {
            fn provide_credentials<'a>(
                &'a self,
            ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                aws_credential_types::provider::future::ProvideCredentials::ready(Ok(
                    aws_credential_types::Credentials::new(
                        format!("KEY{n}"),
                        "secret",
                        None,
                        self.1,
                        "test",
                    ),
                ))
            }
        }
        let long = SystemTime::now() + Duration::from_secs(3600);
        let chain = ChainCredentials::new(SharedCredentialsProvider::new(Counting(
            0.into(),
            Some(long),
        )));
        let first = chain.get_credential().await.expect("credentials");
        let second = chain.get_credential().await.expect("credentials");
        assert_eq!(
            (first.key_id.as_str(), second.key_id.as_str()),
            ("KEY0", "KEY0")
        );

        // Expiring within the margin: renewed on every use until fresh ones come.
        let soon = SystemTime::now() + Duration::from_secs(60);
        let chain = ChainCredentials::new(SharedCredentialsProvider::new(Counting(
            0.into(),
            Some(soon),
        )));
        let first = chain.get_credential().await.expect("credentials");
        let second = chain.get_credential().await.expect("credentials");
        assert_eq!(
            (first.key_id.as_str(), second.key_id.as_str()),
            ("KEY0", "KEY1")
        );
    }
}
