//! Open Exchange Rates over HTTP: `historical/YYYY-MM-DD.json` and `latest.json`, base USD.
//!
//! The key travels as an `Authorization: Token …` header, never in a URL, so the URLs this
//! module logs and stores in `rates_errors` are safe to show. 429, 5xx, connection errors and
//! timeouts are retried with exponential backoff and jitter (backon), waiting at least what
//! the server's `Retry-After` asks; 400, 401, 403 and 404 are final.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::NaiveDate;
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use tracing::{debug, warn};
use url::Url;

use super::key::AppId;
use super::oer::DailyRates;
use super::source::{interpret, FetchError, RateSource};

/// The public API; `--oxr-url` points elsewhere (a proxy, a test server).
pub const DEFAULT_URL: &str = "https://openexchangerates.org/api";

/// How hard to try one request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a server asking for more fails the date now
    /// (it is an error row, and the next run tries again) instead of stalling the run.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// One failed attempt: the error it becomes if it is the last, and whether to try again.
#[derive(Debug)]
struct Attempt {
    error: FetchError,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// The Open Exchange Rates API.
pub struct OxrSource {
    base: Url,
    key: AppId,
    client: reqwest::Client,
    retry: RetryPolicy,
    /// Retries made, by HTTP status (0: connection error or timeout), for `/metrics`.
    retries: Mutex<BTreeMap<i32, u64>>,
}

impl std::fmt::Debug for OxrSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OxrSource")
            .field("base", &self.base.as_str())
            .field("key", &self.key)
            .finish()
    }
}

/// An HTTP client with connect and whole-request timeouts, shared by the HTTP sources.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("fxpipe/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl OxrSource {
    /// `base` is the API root (`…/api`); a trailing slash is optional.
    pub fn new(
        base: &str,
        key: AppId,
        client: reqwest::Client,
        retry: RetryPolicy,
    ) -> Result<Self, String> {
        let mut base = Url::parse(base).map_err(|e| format!("--oxr-url {base:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!("--oxr-url {base}: use an http:// or https:// URL"));
        }
        if !base.username().is_empty() || base.password().is_some() || base.query().is_some() {
            // Credentials belong in OXR_APP_ID; a URL ends up in logs and error rows.
            return Err(
                "--oxr-url must not carry credentials or a query: set the key in OXR_APP_ID"
                    .to_string(),
            );
        }
        let loopback = matches!(base.host(), Some(url::Host::Domain("localhost")))
            || match base.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                _ => false,
            };
        if base.scheme() == "http" && !loopback {
            // The App ID travels in every request's query string.
            return Err(format!(
                "--oxr-url {base}: plain http:// would send the App ID in clear text; use https:// (http:// only to 127.0.0.1 or localhost, e.g. a test server)"
            ));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            base,
            key,
            client,
            retry,
            retries: Mutex::new(BTreeMap::new()),
        })
    }

    fn url(&self, path: &str) -> Url {
        // Joining a relative path onto a base ending in '/' cannot fail.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    /// The URL a date is fetched from (no credentials: the key is a header).
    pub fn historical_url(&self, date: NaiveDate) -> Url {
        self.url(&format!("historical/{}.json", date.format("%Y-%m-%d")))
    }

    async fn get(&self, url: Url) -> Result<DailyRates, FetchError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.max_retries)
            .with_jitter();
        let max_retry_after = self.retry.max_retry_after;
        (|| self.attempt(&url))
            .retry(backoff)
            .when(|a: &Attempt| a.retryable && a.retry_after.is_none_or(|d| d <= max_retry_after))
            .adjust(|a: &Attempt, delay| match (a.retry_after, delay) {
                // Never sooner than the server asked.
                (Some(asked), Some(planned)) => Some(planned.max(asked)),
                (_, planned) => planned,
            })
            .notify(|a: &Attempt, delay| {
                *self
                    .retries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(a.error.status)
                    .or_default() += 1;
                warn!(
                    url = %url,
                    status = a.error.status,
                    message = %a.error.message,
                    retry_in_ms = delay.as_millis() as u64,
                    "rate request failed, retrying"
                );
            })
            .await
            .map_err(|a| a.error)
    }

    async fn attempt(&self, url: &Url) -> Result<DailyRates, Attempt> {
        let mut header =
            HeaderValue::from_str(&format!("Token {}", self.key.expose())).map_err(|_| {
                Attempt {
                    error: FetchError::new(
                        401,
                        "invalid_app_id",
                        "the App ID in OXR_APP_ID holds characters no HTTP header can carry",
                    ),
                    retryable: false,
                    retry_after: None,
                }
            })?;
        header.set_sensitive(true);
        debug!(url = %url, "requesting rates");
        let response = self
            .client
            .get(url.clone())
            .header(AUTHORIZATION, header)
            .send()
            .await
            .map_err(|e| transport_error(url, &e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .text()
            .await
            .map_err(|e| transport_error(url, &e))?;
        let body = self.redact(&body);
        if status.is_success() {
            return interpret(&body).map_err(|error| Attempt {
                error,
                retryable: false,
                retry_after: None,
            });
        }
        let error = match interpret(&body) {
            Err(mut error) if error.message != "invalid_response" => {
                error.status = status.as_u16() as i32;
                error
            }
            _ => FetchError::new(
                status.as_u16() as i32,
                status.canonical_reason().unwrap_or("http_error"),
                format!("{url} answered {status}"),
            ),
        };
        Err(Attempt {
            error,
            retryable: status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error(),
            retry_after,
        })
    }

    /// A hostile or broken server could echo the key back: it never leaves this module.
    fn redact(&self, text: &str) -> String {
        let key = self.key.expose();
        if key.is_empty() {
            text.to_string()
        } else {
            text.replace(key, "***")
        }
    }
}

fn transport_error(url: &Url, e: &reqwest::Error) -> Attempt {
    let message = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection_failed"
    } else if e.is_body() || e.is_decode() {
        "incomplete_response"
    } else {
        "request_failed"
    };
    // The error's own text carries the URL, which has no credentials in it.
    let mut why = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        why.push_str(": ");
        why.push_str(&inner.to_string());
        source = inner.source();
    }
    Attempt {
        error: FetchError::new(0, message, format!("{url}: {why}")),
        retryable: true,
        retry_after: None,
    }
}

#[async_trait::async_trait]
impl RateSource for OxrSource {
    async fn latest(&self) -> super::source::Latest {
        super::source::Latest::Supported(self.get(self.url("latest.json")).await)
    }

    async fn fetch(&self, date: NaiveDate) -> Result<DailyRates, FetchError> {
        self.get(self.historical_url(date)).await
    }

    fn describe(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    fn location(&self, date: NaiveDate) -> String {
        self.historical_url(date).to_string()
    }

    fn retries(&self) -> BTreeMap<i32, u64> {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn checks_timestamp(&self) -> bool {
        true
    }

    fn paced(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_never_carry_the_key_and_credentials_in_the_base_are_refused() {
        let source = OxrSource::new(
            "http://127.0.0.1:9/api",
            AppId::new("k3y"),
            reqwest::Client::new(),
            RetryPolicy::default(),
        )
        .unwrap();
        let date = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        assert_eq!(
            source.location(date),
            "http://127.0.0.1:9/api/historical/2024-03-01.json"
        );
        assert!(!format!("{source:?}").contains("k3y"));
        // The API has quotas: its requests are paced; local files are not.
        assert!(source.paced());
        let files =
            crate::ingest::source::open(&format!("file://{}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(!files.paced());
        for bad in [
            "http://u:p@127.0.0.1/api",
            "http://127.0.0.1/api?app_id=x",
            "ftp://x/api",
            // Plain HTTP off this machine would carry the App ID in clear text.
            "http://openexchangerates.org/api/",
            "http://10.0.0.5:8080/api/",
        ] {
            assert!(
                OxrSource::new(
                    bad,
                    AppId::new("k"),
                    reqwest::Client::new(),
                    RetryPolicy::default()
                )
                .is_err(),
                "{bad}"
            );
        }
        for good in [
            "https://openexchangerates.org/api/",
            "http://127.0.0.1:9000/api",
            "http://localhost:9000/api",
            "http://[::1]:9000/api",
        ] {
            assert!(
                OxrSource::new(
                    good,
                    AppId::new("k"),
                    reqwest::Client::new(),
                    RetryPolicy::default()
                )
                .is_ok(),
                "{good}"
            );
        }
    }
}
