//! The scheduler's REST API as a health check (`fxpipe doctor`): does it answer, which
//! Ballista it runs, how many executors have registered.
//!
//! The REST API is served on the scheduler's gRPC port, so `df://HOST:PORT` is all it takes.
//! A scheduler without executors accepts jobs that never run, which is why the count matters.

use std::time::Duration;

use serde::Deserialize;

use super::EngineError;

/// What the scheduler says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerStatus {
    /// Ballista's version (`/api/version`).
    pub version: String,
    /// Executors registered and alive (`/api/executors`).
    pub executors: usize,
    /// Their cores (task slots) together: how many partitions run at once.
    pub vcores: usize,
}

#[derive(Debug, Deserialize)]
struct Version {
    version: String,
}

#[derive(Debug, Deserialize)]
struct Executor {
    #[allow(dead_code)]
    id: String,
    /// Missing from older schedulers' answers: then the executor counts as one core.
    #[serde(default)]
    specification: Option<Specification>,
}

#[derive(Debug, Deserialize)]
struct Specification {
    vcores: u32,
}

/// Asks the scheduler at `address` (`df://HOST:PORT`); each request gives up after `timeout`.
/// With `tls`, over mutual TLS.
pub async fn status(
    address: &str,
    timeout: Duration,
    tls: Option<&super::tls::Tls>,
) -> Result<SchedulerStatus, EngineError> {
    let base = format!(
        "{}://{}/api",
        super::tls::rest_scheme(tls),
        super::host_port(address)?
    );
    let client = super::tls::rest_client(tls, timeout).map_err(|e| EngineError::RestApi {
        address: address.to_string(),
        why: e.to_string(),
    })?;
    let get = |path: &'static str| {
        let request = client.get(format!("{base}{path}"));
        async move {
            let response = request
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| rest_error(address, &e))?;
            let body = response
                .bytes()
                .await
                .map_err(|e| rest_error(address, &e))?;
            Ok::<_, EngineError>(body)
        }
    };
    let (version, executors) = futures::try_join!(get("/version"), get("/executors"))?;
    let parse = |what: &str, e: serde_json::Error| EngineError::RestApi {
        address: address.to_string(),
        why: format!("unexpected answer to {what}: {e}"),
    };
    let version: Version =
        serde_json::from_slice(&version).map_err(|e| parse("/api/version", e))?;
    let executors: Vec<Executor> =
        serde_json::from_slice(&executors).map_err(|e| parse("/api/executors", e))?;
    Ok(SchedulerStatus {
        version: version.version,
        executors: executors.len(),
        vcores: executors
            .iter()
            .map(|e| e.specification.as_ref().map_or(1, |s| s.vcores.max(1)) as usize)
            .sum(),
    })
}

/// What a plain-text client is told by a scheduler that serves TLS.
pub(super) const NEEDS_TLS: &str = "the scheduler serves TLS: give --tls-dir / FXPIPE_TLS_DIR";

/// A reqwest error with its causes (its own text is often only "error sending request").
fn rest_error(address: &str, error: &reqwest::Error) -> EngineError {
    let mut why = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !why.contains(&text) {
            why = format!("{why}: {text}");
        }
        source = cause.source();
    }
    if why.contains("invalid HTTP version") {
        why.push_str(&format!(" ({NEEDS_TLS})"));
    }
    EngineError::RestApi {
        address: address.to_string(),
        why,
    }
}
