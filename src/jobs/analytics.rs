//! The analytics users run on the processed table (`fxpipe report NAME`), one `.sql` file each.

use datafusion::dataframe::DataFrame;

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
