//! Test-only fault injection: makes a job stop between two of its commits, as a crash would.
//!
//! Set `FXPIPE_TEST_FAIL_AFTER=<point>` (points are named by the job, e.g. `load:transactions`)
//! and the job returns an error right after that point. The crash-repair tests use it to prove
//! that re-running a command after a failure at any point leaves every table as one
//! uninterrupted run would. It is read nowhere else and is not a user setting.

/// The environment variable the tests set.
pub const VARIABLE: &str = "FXPIPE_TEST_FAIL_AFTER";

/// An injected failure.
#[derive(Debug, thiserror::Error)]
#[error("injected failure after {0} ({VARIABLE} is set: a test-only setting)")]
pub struct InjectedFault(pub &'static str);

/// Fails if the tests asked for a failure right after `point`.
pub fn after(point: &'static str) -> Result<(), InjectedFault> {
    match std::env::var(VARIABLE) {
        Ok(wanted) if wanted == point => Err(InjectedFault(point)),
        _ => Ok(()),
    }
}
