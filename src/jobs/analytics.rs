//! The analytics users run on the processed table (`fxpipe report NAME`), one `.sql` file each.
//!
//! Every report has a `base_currency` column and groups by it: the amounts it sums are in that
//! currency, and amounts in two base currencies are never added together.

use datafusion::dataframe::DataFrame;

use super::normalize::BASE_CURRENCY_COLUMN;
use super::JobError;
use crate::engine::Engine;
use crate::storage::{Lake, Table};

/// Report names (as the CLI takes them) and their SQL.
pub const REPORTS: [(&str, &str); 5] = [
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
];

/// Plans a named report over the lake's processed table.
pub async fn report(engine: &Engine, lake: &Lake, name: &str) -> Result<DataFrame, JobError> {
    let Some((_, sql)) = REPORTS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = REPORTS.iter().map(|(n, _)| *n).collect();
        return Err(JobError::UnknownReport(name.to_string(), names.join(", ")));
    };
    if !engine.register_table(lake, Table::Processed).await? {
        return Err(JobError::MissingTable(
            "processed",
            "run `fxpipe normalize` first",
        ));
    }
    let ctx = engine.ctx();
    // The SQL uses the Athena-compatible names; a table written with `--columns-follow-base`
    // (withdrawal_eur_amt) is read through a view with those names.
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
        return Ok(ctx.sql(sql).await?);
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
    Ok(ctx.sql(sql).await?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::RecordBatch;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    use super::REPORTS;

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
        for (name, sql) in REPORTS {
            let plan = ctx.sql(sql).await?.into_optimized_plan()?;
            let shown = plan.display_indent_schema().to_string();
            assert!(!shown.contains("Float"), "{name} plans a float:\n{shown}");
            let output = plan.schema().field(0);
            assert_eq!(output.name(), "base_currency", "{name}");
        }
        Ok(())
    }
}
