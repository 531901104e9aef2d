//! The rate-source seam: where daily rates come from.
//!
//! `file://DIR` reads Open-Exchange-Rates-format files (`DIR/historical/YYYY-MM-DD.json`, as
//! `fxpipe gen rates` writes them); the HTTP API is a second implementation of [`RateSource`].

use std::path::PathBuf;

use chrono::NaiveDate;

use super::oer::{self, DailyRates, Parsed};

/// A failed fetch, in the shape of the source's error body (it becomes a `rates_errors` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub status: i32,
    pub message: String,
    pub description: String,
}

impl FetchError {
    pub fn new(status: i32, message: &str, description: impl Into<String>) -> Self {
        Self {
            status,
            message: message.to_string(),
            description: description.into(),
        }
    }

    /// A day the source does not publish rates for (a weekend, a holiday, a date its data does
    /// not cover). It is a 404 like a missing OXR day, but with its own message, so the ingest
    /// can store nothing for it without counting it as a failure.
    pub fn not_published(description: impl Into<String>) -> Self {
        Self::new(404, NOT_PUBLISHED, description)
    }

    /// Whether this is [`FetchError::not_published`]: no rates that day, by the source's calendar.
    pub fn is_not_published(&self) -> bool {
        self.status == 404 && self.message == NOT_PUBLISHED
    }
}

/// What `--latest` gets from a source.
pub enum Latest {
    Supported(Result<DailyRates, FetchError>),
    /// The source has no notion of "the latest rates".
    Unsupported,
}

/// The message of [`FetchError::not_published`].
const NOT_PUBLISHED: &str = "not_published";

/// Where daily USD-based rates come from.
#[async_trait::async_trait]
pub trait RateSource: Send + Sync + std::fmt::Debug {
    /// The most recent rates, stored under the day of their timestamp.
    async fn latest(&self) -> Latest {
        Latest::Unsupported
    }
    /// Rates for one day, or the source's error for it.
    async fn fetch(&self, date: NaiveDate) -> Result<DailyRates, FetchError>;
    /// A description for reports (never containing credentials).
    fn describe(&self) -> String;
    /// Where `date` is fetched from, for its `rates_errors` row (never containing credentials).
    fn location(&self, _date: NaiveDate) -> String {
        self.describe()
    }
    /// Retries made so far, by HTTP status (0: connection errors and timeouts).
    fn retries(&self) -> std::collections::BTreeMap<i32, u64> {
        Default::default()
    }
    /// Whether requests must be paced (`--requests-per-second`): true for APIs with quotas,
    /// false for local files and for sources that download one document per run.
    fn paced(&self) -> bool {
        false
    }
    /// Whether a day's `timestamp` must fall on the date asked for. True for live APIs, whose
    /// answer for the wrong day would be stored as the asked day's rates.
    fn checks_timestamp(&self) -> bool {
        false
    }
}

/// Why a source could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "unsupported rate source {0:?}: use file://DIR (a folder with historical/YYYY-MM-DD.json)"
    )]
    Unsupported(String),
    #[error("rate source folder {0} does not exist")]
    MissingFolder(PathBuf),
}

/// Opens a source from its URL.
pub fn open(url: &str) -> Result<Box<dyn RateSource>, SourceError> {
    match url.strip_prefix("file://") {
        Some(dir) => {
            let root = PathBuf::from(dir);
            if !root.is_dir() {
                return Err(SourceError::MissingFolder(root));
            }
            Ok(Box::new(FileSource { root }))
        }
        None => Err(SourceError::Unsupported(url.to_string())),
    }
}

/// Open-Exchange-Rates-format files in a folder.
#[derive(Debug, Clone)]
pub struct FileSource {
    root: PathBuf,
}

/// Turns a response body into rates or the error it carries.
pub fn interpret(body: &str) -> Result<DailyRates, FetchError> {
    match oer::parse(body) {
        Ok(Parsed::Rates(rates)) => Ok(rates),
        Ok(Parsed::Error(e)) => Err(FetchError {
            status: e.status,
            message: e.message,
            description: e.description,
        }),
        Err(why) => Err(FetchError::new(0, "invalid_response", why)),
    }
}

#[async_trait::async_trait]
impl RateSource for FileSource {
    async fn fetch(&self, date: NaiveDate) -> Result<DailyRates, FetchError> {
        let path = self
            .root
            .join("historical")
            .join(format!("{}.json", date.format("%Y-%m-%d")));
        match tokio::fs::read_to_string(&path).await {
            Ok(body) => interpret(&body),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FetchError::new(
                404,
                "not_found",
                format!("no file {}", path.display()),
            )),
            Err(e) => Err(FetchError::new(
                0,
                "read_failed",
                format!("{}: {e}", path.display()),
            )),
        }
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_published_is_told_apart_from_a_missing_day() {
        let holiday = FetchError::not_published("2024-12-25 is a TARGET holiday");
        assert_eq!(holiday.status, 404);
        assert_eq!(holiday.message, "not_published");
        assert!(holiday.is_not_published());
        // The file source's and OXR's 404 is a failure: the day should have had rates.
        assert!(!FetchError::new(404, "not_found", "no file").is_not_published());
        assert!(!FetchError::new(0, "not_published", "status 0").is_not_published());
    }
}
