//! The analytics users run on the processed table (`fxpipe report NAME`), one `.sql` file each.
//!
//! Every report has a `base_currency` column and groups by it: the amounts it sums are in that
//! currency, and amounts in two base currencies are never added together.

use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;

use super::normalize::{BASE_CURRENCY_COLUMN, MAX_RATE_AGE_DAYS};
use super::JobError;
use crate::engine::Engine;
use crate::storage::{Lake, Table};

/// Report names (as the CLI takes them) and their SQL.
pub const REPORTS: [(&str, &str); 6] = [
    (
        "account-summary",
        include_str!("../../sql/analytics/account_summary.sql"),
    ),
    (
        "creditworthiness",
        include_str!("../../sql/analytics/creditworthiness.sql"),
    ),
    (
        "deposits-by-currency",
        include_str!("../../sql/analytics/deposits_by_currency.sql"),
    ),
    (
        "currency-exposure",
        include_str!("../../sql/analytics/currency_exposure.sql"),
    ),
    (
        "monthly-flows",
        include_str!("../../sql/analytics/monthly_flows.sql"),
    ),
    (
        "balance-history",
        include_str!("../../sql/analytics/balance_history.sql"),
    ),
];

/// Which SQL engine a report's text is rendered for. Each report is one file in
/// `sql/analytics/`, written with placeholders for what the engines spell differently: the
/// table's name (`{processed}`) and the decimal types of the one division whose scale rules
/// differ (`{ratio_dividend}`, `{ratio_divisor}`; see `creditworthiness.sql`).
#[derive(Debug, Clone, Copy)]
pub enum Dialect<'a> {
    /// fxpipe's own engine (`fxpipe report`, the HTML report).
    DataFusion,
    /// Athena engine v3 (Trino), reading `"database".processed`. The name must already be
    /// validated (`catalog::Database`): it is quoted, not escaped.
    Athena { database: &'a str },
}

/// A report's SQL rendered for `dialect`.
pub fn render(sql: &str, dialect: Dialect) -> String {
    let (processed, dividend, divisor) = match dialect {
        Dialect::DataFusion => ("processed".to_string(), "DECIMAL(38, 2)", "DECIMAL(24, 2)"),
        Dialect::Athena { database } => (
            format!("\"{database}\".processed"),
            "DECIMAL(38, 4)",
            "DECIMAL(38, 2)",
        ),
    };
    sql.replace("{processed}", &processed)
        .replace("{ratio_dividend}", dividend)
        .replace("{ratio_divisor}", divisor)
}

/// `balance-history --account-currency`: the month-end balance converted, over the
/// `balance_history` view and `rates`.
const BALANCE_IN_ACCOUNT_CURRENCY_SQL: &str =
    include_str!("../../sql/balance_in_account_currency.sql");

/// Options of the reports that take any (today only `balance-history`).
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The currency the accounts' `balance_amt` is in: `balance-history` then also converts
    /// each month-end balance to the base currency at the month-end rate.
    pub account_currency: Option<String>,
    /// How many days before a month's last day its rate may come from (normalize's rule).
    pub max_rate_age_days: u32,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            account_currency: None,
            max_rate_age_days: 3,
        }
    }
}

/// Whether a report takes `--account-currency`.
pub fn takes_account_currency(name: &str) -> bool {
    name == "balance-history"
}

/// Plans a named report over the lake's processed table (at its latest version).
pub async fn report(engine: &Engine, lake: &Lake, name: &str) -> Result<DataFrame, JobError> {
    report_with(engine, lake, name, &ReportOptions::default()).await
}

/// [`report`] with options (`balance-history --account-currency`).
pub async fn report_with(
    engine: &Engine,
    lake: &Lake,
    name: &str,
    options: &ReportOptions,
) -> Result<DataFrame, JobError> {
    let sql = report_sql(name)?;
    register_processed(engine, lake).await?;
    if options.account_currency.is_some() {
        if !takes_account_currency(name) {
            return Err(JobError::Invalid(format!(
                "--account-currency applies to balance-history only, not {name}"
            )));
        }
        if engine
            .register_table_version(lake, Table::Rates)
            .await?
            .is_none()
        {
            return Err(JobError::MissingTable(
                "rates",
                "--account-currency converts at the month-end rate; run `fxpipe ingest` first",
            ));
        }
    }
    plan(engine, &sql, name, options).await
}

/// The SQL of a report for fxpipe's engine, or the error listing the names there are.
fn report_sql(name: &str) -> Result<String, JobError> {
    REPORTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sql)| render(sql, Dialect::DataFusion))
        .ok_or_else(|| {
            let names: Vec<&str> = REPORTS.iter().map(|(n, _)| *n).collect();
            JobError::UnknownReport(name.to_string(), names.join(", "))
        })
}

/// Plans a report over the tables already registered (see [`register_processed`]): several
/// reports planned this way read the same table versions.
pub async fn plan_registered(
    engine: &Engine,
    name: &str,
    options: &ReportOptions,
) -> Result<DataFrame, JobError> {
    plan(engine, &report_sql(name)?, name, options).await
}

async fn plan(
    engine: &Engine,
    sql: &str,
    name: &str,
    options: &ReportOptions,
) -> Result<DataFrame, JobError> {
    let ctx = engine.ctx();
    let frame = ctx.sql(sql).await?;
    let Some(currency) = options
        .account_currency
        .as_ref()
        .filter(|_| takes_account_currency(name))
    else {
        return Ok(frame);
    };
    if options.max_rate_age_days > MAX_RATE_AGE_DAYS {
        return Err(JobError::Invalid(format!(
            "--max-rate-age {} is more than {MAX_RATE_AGE_DAYS} days",
            options.max_rate_age_days
        )));
    }
    // The view is a logical plan, inlined where it is used: it travels to a cluster.
    let _ = ctx.deregister_table("balance_history");
    ctx.register_table("balance_history", frame.into_view())?;
    Ok(ctx
        .sql(BALANCE_IN_ACCOUNT_CURRENCY_SQL)
        .await?
        .with_param_values(vec![
            ScalarValue::Utf8(Some(currency.clone())),
            ScalarValue::Int64(Some(i64::from(options.max_rate_age_days))),
        ])?)
}

/// Registers the processed table for the reports and returns its Delta version. A table
/// written with `--columns-follow-base` (withdrawal_eur_amt) is registered as a view with the
/// Athena-compatible names the SQL uses.
pub async fn register_processed(engine: &Engine, lake: &Lake) -> Result<u64, JobError> {
    let Some(version) = engine
        .register_table_version(lake, Table::Processed)
        .await?
    else {
        return Err(JobError::MissingTable(
            "processed",
            "run `fxpipe normalize` first",
        ));
    };
    let ctx = engine.ctx();
    let processed = ctx.table(Table::Processed.sql_name()).await?;
    // Each report groups by the base currency, so a table that does not say it cannot be read.
    if !processed
        .schema()
        .has_column_with_unqualified_name(BASE_CURRENCY_COLUMN)
    {
        return Err(JobError::Invalid(
            "the processed table was written before fxpipe recorded its base currency; \
             run `fxpipe normalize` (without --from/--to) to rewrite it"
                .to_string(),
        ));
    }
    if processed
        .schema()
        .has_column_with_unqualified_name("withdrawal_sgd_amt")
    {
        return Ok(version);
    }
    let names: Vec<String> = processed
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut view = processed;
    for side in ["withdrawal", "deposit"] {
        let (prefix, plain) = (format!("{side}_"), format!("{side}_amt"));
        let converted = names
            .iter()
            .find(|n| n.starts_with(&prefix) && n.ends_with("_amt") && **n != plain);
        if let Some(from) = converted {
            view = view.with_column_renamed(from, &format!("{side}_sgd_amt"))?;
        }
    }
    ctx.deregister_table(Table::Processed.sql_name())?;
    ctx.register_table(Table::Processed.sql_name(), view.into_view())?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::RecordBatch;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    use super::{render, Dialect, REPORTS};

    /// An empty table with the processed table's columns the reports read.
    fn processed_columns() -> RecordBatch {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let decimal = |name: &str, scale| Field::new(name, DataType::Decimal128(38, scale), true);
        let schema = Schema::new(vec![
            text("account_no"),
            decimal("withdrawal_amt", 4),
            text("withdrawal_currency"),
            decimal("deposit_amt", 4),
            text("deposit_currency"),
            decimal("withdrawal_sgd_amt", 2),
            decimal("deposit_sgd_amt", 2),
            text("base_currency"),
            Field::new("date", DataType::Date32, true),
            decimal("balance_amt", 4),
            text("source_file"),
            Field::new("source_line", DataType::Int64, true),
            Field::new("year", DataType::Int32, true),
            Field::new("month", DataType::Int32, true),
        ]);
        RecordBatch::new_empty(Arc::new(schema))
    }

    /// No report computes with floats, even on a session that parses `1.5` as a Float64 (the
    /// default): every type in the optimized plan is a decimal, integer, string or date.
    #[tokio::test]
    async fn no_report_plans_a_float() -> datafusion::error::Result<()> {
        let ctx = SessionContext::new();
        ctx.register_batch("processed", processed_columns())?;
        // The Athena text too, read from the default schema (`public`) as a database.
        let dialects = [Dialect::DataFusion, Dialect::Athena { database: "public" }];
        for (name, sql) in REPORTS {
            for dialect in dialects {
                let rendered = render(sql, dialect);
                let plan = ctx.sql(&rendered).await?.into_optimized_plan()?;
                let shown = plan.display_indent_schema().to_string();
                assert!(!shown.contains("Float"), "{name} plans a float:\n{shown}");
                let output = plan.schema().field(0);
                assert_eq!(output.name(), "base_currency", "{name}");
            }
        }
        Ok(())
    }

    /// Every placeholder a report file uses is one `render` fills, in both dialects.
    #[test]
    fn rendering_leaves_no_placeholder() {
        for (name, sql) in REPORTS {
            for dialect in [Dialect::DataFusion, Dialect::Athena { database: "bank" }] {
                let rendered = render(sql, dialect);
                assert!(!rendered.contains('{'), "{name} ({dialect:?}): {rendered}");
            }
        }
        let athena = render("FROM {processed}", Dialect::Athena { database: "bank" });
        assert_eq!(athena, "FROM \"bank\".processed");
    }
}
