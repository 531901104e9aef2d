//! What changed since the last normalize (`normalize --changed`, and `fxpipe run`): the months
//! of `processed` whose inputs changed, found from the Delta logs rather than by reading the
//! history.
//!
//! Each normalize records, in its commit, the `transactions` and `rates` versions it read and
//! the settings that shape its output ([`Recorded`]). The next run compares the data files of
//! those versions with today's:
//! - a transactions file added or removed since then changes the months of `date` its
//!   statistics span;
//! - a rates file added or removed changes the days its `run_date` statistics span; a day's
//!   rate can serve value dates up to `max_rate_age` days later (a late rate replaces a
//!   fallback), so every month holding a transaction with a value date in [day, day + age] is
//!   recomputed. Those months are found with one query over the transactions' two date columns.
//!
//! A change of base currency, maximum rate age, converted-column names or the normalize SQL
//! means a full rewrite, and so does a file without date statistics (fxpipe always writes them;
//! another writer may not).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow::array::{Array, AsArray};
use chrono::{Datelike, Duration, NaiveDate};
use deltalake::DeltaTable;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::normalize::{NormalizeOptions, YearMonth};
use super::JobError;
use crate::engine::Engine;
use crate::storage::{delta, Lake, StorageError, Table};

/// The commitInfo key under which normalize records what it read.
pub const RECORDED_KEY: &str = "fxpipe.normalize";

/// How many of processed's newest commits are searched for the last normalize (compactions
/// and vacuums come between).
const HISTORY_DEPTH: usize = 100;

/// What a normalize read and how it converted, as recorded in its commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    pub transactions_version: i64,
    pub rates_version: i64,
    pub base_currency: String,
    pub max_rate_age_days: u32,
    pub column_suffix: String,
    /// A hash of the SQL that computes processed (its text decides every row).
    pub sql: String,
}

impl Recorded {
    /// What this run reads and how it converts.
    pub fn now(options: &NormalizeOptions, transactions: i64, rates: i64, sql: &str) -> Self {
        Self {
            transactions_version: transactions,
            rates_version: rates,
            base_currency: options.base_currency.clone(),
            max_rate_age_days: options.max_rate_age_days,
            column_suffix: options.column_suffix.clone(),
            sql: blake3::hash(sql.as_bytes()).to_hex()[..16].to_string(),
        }
    }

    /// The commitInfo entry.
    pub fn info(&self) -> Vec<(String, serde_json::Value)> {
        vec![(
            RECORDED_KEY.to_string(),
            serde_json::to_value(self).unwrap_or_default(),
        )]
    }
}

/// What `--changed` has to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing changed: no commit.
    UpToDate,
    /// Rewrite the whole table, for this reason.
    Full(String),
    /// Rewrite these months, each for these reasons.
    Months(BTreeMap<YearMonth, BTreeSet<String>>),
}

/// The last normalize's record, from processed's newest commits; `None` if there is none.
pub async fn last_recorded(lake: &Lake) -> Result<Option<Recorded>, StorageError> {
    let Some(processed) = delta::open(lake, Table::Processed).await? else {
        return Ok(None);
    };
    let mut history = processed.history(Some(HISTORY_DEPTH));
    while let Some(commit) = history
        .try_next()
        .await
        .map_err(|e| StorageError::delta(Table::Processed, e))?
    {
        if let Some(value) = commit.info.get(RECORDED_KEY) {
            return Ok(serde_json::from_value(value.clone()).ok());
        }
        // A whole-table write by anything else (an older fxpipe) ends the search.
        if commit.operation.as_deref() == Some("WRITE") && commit.info.is_empty() {
            break;
        }
    }
    Ok(None)
}

impl Recorded {
    /// Why every month must be recomputed against this earlier record: a setting that
    /// changes every converted row did change.
    fn rewrites_all(&self, now: &Recorded) -> Option<String> {
        for (what, before, after) in [
            ("base currency", &self.base_currency, &now.base_currency),
            ("converted columns", &self.column_suffix, &now.column_suffix),
            ("normalize SQL", &self.sql, &now.sql),
        ] {
            if before != after {
                return Some(format!("the {what} changed ({before} → {after})"));
            }
        }
        (self.max_rate_age_days != now.max_rate_age_days).then(|| {
            format!(
                "the maximum rate age changed ({} → {} days)",
                self.max_rate_age_days, now.max_rate_age_days
            )
        })
    }
}

/// The months to recompute, comparing `now` with the last normalize's record.
pub async fn plan(
    engine: &Engine,
    lake: &Lake,
    now: &Recorded,
    transactions: &DeltaTable,
    rates: &DeltaTable,
) -> Result<Plan, JobError> {
    let Some(last) = last_recorded(lake).await? else {
        return Ok(Plan::Full(
            "no earlier normalize recorded what it read".to_string(),
        ));
    };
    if let Some(reason) = last.rewrites_all(now) {
        return Ok(Plan::Full(reason));
    }
    if last.transactions_version == now.transactions_version
        && last.rates_version == now.rates_version
    {
        return Ok(Plan::UpToDate);
    }
    let mut months: BTreeMap<YearMonth, BTreeSet<String>> = BTreeMap::new();

    let changed = changed_files(
        lake,
        Table::Transactions,
        transactions,
        last.transactions_version,
        "date",
    )
    .await?;
    let spans = match changed {
        Changed::Spans(spans) => spans,
        Changed::Unknown(reason) => return Ok(Plan::Full(reason)),
    };
    for (first, last_day) in spans {
        for month in months_spanned(first, last_day) {
            months
                .entry(month)
                .or_default()
                .insert(format!("transactions v{}", now.transactions_version));
        }
    }

    let changed = changed_files(lake, Table::Rates, rates, last.rates_version, "run_date").await?;
    let days = match changed {
        Changed::Spans(spans) => spans,
        Changed::Unknown(reason) => return Ok(Plan::Full(reason)),
    };
    if !days.is_empty() {
        let age = Duration::days(i64::from(now.max_rate_age_days));
        let ranges: Vec<(NaiveDate, NaiveDate)> = days
            .iter()
            .map(|(first, last)| (*first, *last + age))
            .collect();
        for month in months_using(engine, &ranges).await? {
            let reason = match days.as_slice() {
                [(first, last)] if first == last => format!("rates of {first}"),
                [(first, last)] => format!("rates of {first} to {last}"),
                _ => format!("rates of {} days' ranges", days.len()),
            };
            months.entry(month).or_default().insert(reason);
        }
    }
    if months.is_empty() {
        return Ok(Plan::UpToDate);
    }
    Ok(Plan::Months(months))
}

enum Changed {
    /// The date spans (first, last) of the files added or removed.
    Spans(Vec<(NaiveDate, NaiveDate)>),
    /// Why the changes cannot be told from the log.
    Unknown(String),
}

/// The files of `table` added or removed between `since` and `now`, as spans of `column`.
async fn changed_files(
    lake: &Lake,
    table: Table,
    now: &DeltaTable,
    since: i64,
    column: &str,
) -> Result<Changed, JobError> {
    let current = now.version().unwrap_or_default() as i64;
    if current == since {
        return Ok(Changed::Spans(Vec::new()));
    }
    if current < since {
        return Ok(Changed::Unknown(format!(
            "{} is at version {current}, older than the v{since} the last normalize read",
            table.sql_name()
        )));
    }
    let mut then = lake
        .delta_builder(table)?
        .build()
        .map_err(|e| StorageError::delta(table, e))?;
    if let Err(e) = then.load_version(since as u64).await {
        return Ok(Changed::Unknown(format!(
            "{} v{since}, which the last normalize read, can no longer be read ({e})",
            table.sql_name()
        )));
    }
    let before = file_spans(table, &then, column).await?;
    let after = file_spans(table, now, column).await?;
    let mut spans = Vec::new();
    for (path, span) in before.iter().filter(|(p, _)| !after.contains_key(*p)) {
        match span {
            Some(span) => spans.push(*span),
            None => return Ok(Changed::Unknown(no_stats(table, path, column))),
        }
    }
    for (path, span) in after.iter().filter(|(p, _)| !before.contains_key(*p)) {
        match span {
            Some(span) => spans.push(*span),
            None => return Ok(Changed::Unknown(no_stats(table, path, column))),
        }
    }
    Ok(Changed::Spans(spans))
}

fn no_stats(table: Table, path: &str, column: &str) -> String {
    format!(
        "{}'s file {path} has no {column} statistics, so its months are unknown",
        table.sql_name()
    )
}

/// Each active file of `opened` and the span of `column` its statistics give (`None` when
/// they give none; an empty file spans nothing and is left out).
async fn file_spans(
    table: Table,
    opened: &DeltaTable,
    column: &str,
) -> Result<HashMap<String, Option<(NaiveDate, NaiveDate)>>, JobError> {
    let mut spans = HashMap::new();
    let mut views = opened.get_active_add_actions_by_partitions(&[]);
    while let Some(view) = views
        .try_next()
        .await
        .map_err(|e| StorageError::delta(table, e))?
    {
        let stats: Option<serde_json::Value> =
            view.stats().and_then(|s| serde_json::from_str(&s).ok());
        if stats
            .as_ref()
            .and_then(|s| s["numRecords"].as_u64())
            .is_some_and(|n| n == 0)
        {
            continue;
        }
        let date = |which: &str| {
            stats.as_ref().and_then(|s| {
                s[which][column]
                    .as_str()
                    .and_then(|d| NaiveDate::parse_from_str(d.get(..10)?, "%Y-%m-%d").ok())
            })
        };
        spans.insert(
            view.path().to_string(),
            date("minValues").zip(date("maxValues")),
        );
    }
    Ok(spans)
}

/// The months from `first` to `last`, both included.
pub fn months_spanned(first: NaiveDate, last: NaiveDate) -> Vec<YearMonth> {
    let mut months = Vec::new();
    let (mut year, mut month) = (first.year(), first.month());
    while (year, month) <= (last.year(), last.month()) {
        months.push(YearMonth { year, month });
        (year, month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
    }
    months
}

/// The months (of `date`) of the transactions whose value date falls in any of `ranges`: the
/// rows a changed rate can reach.
async fn months_using(
    engine: &Engine,
    ranges: &[(NaiveDate, NaiveDate)],
) -> Result<BTreeSet<YearMonth>, JobError> {
    let within: Vec<String> = ranges
        .iter()
        .map(|(first, last)| format!("(value_date BETWEEN DATE '{first}' AND DATE '{last}')"))
        .collect();
    let sql = format!(
        "SELECT DISTINCT CAST(date_part('year', date) AS INT) AS y, \
         CAST(date_part('month', date) AS INT) AS m FROM transactions WHERE {}",
        within.join(" OR ")
    );
    let plan = engine.ctx().sql(&sql).await?.into_unoptimized_plan();
    let batches = engine.collect_here(plan).await?;
    let mut months = BTreeSet::new();
    for batch in &batches {
        let years = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int32Type>();
        let numbers = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int32Type>();
        for row in 0..batch.num_rows() {
            if years.is_valid(row) && numbers.is_valid(row) {
                months.insert(YearMonth {
                    year: years.value(row),
                    month: numbers.value(row) as u32,
                });
            }
        }
    }
    Ok(months)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_spanned_cross_a_year() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let got = months_spanned(d("2017-11-30"), d("2018-02-01"));
        let keys: Vec<(i32, u32)> = got.iter().map(|m| (m.year, m.month)).collect();
        assert_eq!(keys, vec![(2017, 11), (2017, 12), (2018, 1), (2018, 2)]);
        assert_eq!(months_spanned(d("2017-06-03"), d("2017-06-03")).len(), 1);
    }
}
