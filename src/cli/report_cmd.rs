//! `fxpipe report`'s options beyond a report's rows: `--list`, `--html FILE` (the credit
//! report page) and `balance-history`'s `--account-currency` and `--max-rate-age`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use fxpipe::credit_report;
use fxpipe::engine::Engine;
use fxpipe::jobs::analytics::{self, ReportOptions};
use fxpipe::jobs::normalize::MAX_RATE_AGE_DAYS;
use fxpipe::storage::Lake;

use super::print;

#[derive(Debug, Args)]
pub struct ReportExtras {
    /// List the report names, one per line, with what each computes.
    #[arg(long, conflicts_with_all = ["name", "html"])]
    pub list: bool,
    /// Write the credit report page to FILE (a local file, whatever the lake): one
    /// self-contained HTML file with charts, which loads nothing from anywhere when viewed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "output"])]
    pub html: Option<PathBuf>,
    /// balance-history: the currency the accounts' balance_amt is in; each month-end balance
    /// is then also converted to the base currency at the month-end rate.
    #[arg(long, value_name = "CODE", value_parser = super::args::currency_code, conflicts_with = "html")]
    pub account_currency: Option<String>,
    /// balance-history --account-currency: days before a month's last day its rate may come
    /// from (normalize's rule), 0 to 366.
    #[arg(
        long,
        env = "FXPIPE_MAX_RATE_AGE",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RATE_AGE_DAYS))
    )]
    pub max_rate_age: u32,
}

impl ReportExtras {
    pub fn options(&self) -> ReportOptions {
        ReportOptions {
            account_currency: self.account_currency.clone(),
            max_rate_age_days: self.max_rate_age,
        }
    }
}

/// What each report computes, for `--list` (docs/catalog.md's table says more).
const ABOUT: [(&str, &str); 6] = [
    (
        "account-summary",
        "per account: transactions, withdrawals and deposits",
    ),
    (
        "creditworthiness",
        "per account: deposit/withdrawal ratio and band",
    ),
    (
        "deposits-by-currency",
        "per deposit currency: count and totals",
    ),
    (
        "currency-exposure",
        "per currency: deposits, withdrawals and net",
    ),
    (
        "monthly-flows",
        "per account and month: deposits, withdrawals and net",
    ),
    (
        "balance-history",
        "per account and month: running balance and month-end balance_amt",
    ),
];

/// `fxpipe report --list`: needs no lake.
pub fn list() -> anyhow::Result<()> {
    let mut out = print::stdout();
    for (name, _) in analytics::REPORTS {
        let about = ABOUT
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, a)| a);
        writeln!(out, "{name:<22}{about}")?;
    }
    writeln!(
        out,
        "{:<22}the credit report page (--html FILE)",
        "--html FILE"
    )?;
    Ok(())
}

/// `fxpipe report --html FILE`: runs the page's queries on the engine, then writes the page
/// through a temporary file renamed over FILE, so FILE is whole or as it was.
pub async fn html(engine: &Engine, lake: &Lake, file: &std::path::Path) -> anyhow::Result<()> {
    let report = credit_report::gather(engine, lake).await?;
    let page = credit_report::html::render(&report);
    let (temp, mut handle) = super::output::Pending::create(file)?;
    handle
        .write_all(page.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    temp.persist(handle, file)?;
    print::stderr_note(
        "INFO",
        &format!(
            "wrote the credit report to {} ({} accounts, base currency {})",
            file.display(),
            report.accounts,
            report.base_currency
        ),
        serde_json::json!({
            "path": file.display().to_string(),
            "accounts": report.accounts,
            "base_currency": report.base_currency,
        }),
    );
    Ok(())
}
