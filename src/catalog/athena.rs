//! Athena DDL for the lake's Delta tables, and the analytics rewritten for Athena.
//!
//! Athena engine v3 reads Delta tables natively: `CREATE EXTERNAL TABLE … LOCATION '…'
//! TBLPROPERTIES ('table_type'='DELTA')` with no column list, the schema and partitions coming
//! from the Delta log (reader protocol ≤ 3, no deletion vectors: delta-rs writes (1,2)). The
//! analytics are rendered from the same `sql/analytics/` files `fxpipe report` runs
//! ([`analytics::render`] for [`Dialect::Athena`]): the table's qualified name and the one
//! division whose decimal scale rules differ in Trino are placeholders there.

use super::{CatalogTable, Database, LakeTables};
use crate::jobs::analytics::{self, Dialect, REPORTS};
use crate::storage::Table;

/// The line that introduces each query in [`script`]'s output, before the report's name.
pub const QUERY_MARKER: &str = "-- fxpipe report ";

/// A string literal in Athena DDL and Trino SQL (quotes doubled).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `CREATE EXTERNAL TABLE` for one table. Identifiers are in backticks, as Athena's DDL
/// (Hive syntax) wants them; the database name is validated and the table names are ours.
pub fn ddl(database: &Database, table: &CatalogTable) -> String {
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS `{}`.`{}` LOCATION {} TBLPROPERTIES ('table_type'='DELTA');",
        database.as_str(),
        table.table.sql_name(),
        literal(table.location.as_str()),
    )
}

/// The converted-amount columns the queries are written with, and the names a processed table
/// written with `normalize --columns-follow-base` has instead (`withdrawal_eur_amt`), so the
/// queries read such a table as `fxpipe report` does (through its renaming view).
pub fn converted_columns(processed: &CatalogTable) -> Vec<(&'static str, String)> {
    let mut renames = Vec::new();
    for (side, written) in [
        ("withdrawal", "withdrawal_sgd_amt"),
        ("deposit", "deposit_sgd_amt"),
    ] {
        let plain = format!("{side}_amt");
        let prefix = format!("{side}_");
        let found = processed
            .columns
            .iter()
            .find(|c| c.starts_with(&prefix) && c.ends_with("_amt") && **c != plain);
        if let Some(name) = found.filter(|name| *name != written) {
            renames.push((written, name.clone()));
        }
    }
    renames
}

/// A report's Athena query against `database`, without the file's leading comments (they
/// explain the query to whoever edits it, and are in the repository). `renames` are the
/// converted-amount columns of [`converted_columns`].
pub fn query(database: &Database, sql: &str, renames: &[(&str, String)]) -> String {
    let body: Vec<&str> = sql
        .lines()
        .skip_while(|line| line.trim().is_empty() || line.trim_start().starts_with("--"))
        .collect();
    // Trino quotes identifiers with double quotes; the name holds none (see `Database`).
    let dialect = Dialect::Athena {
        database: database.as_str(),
    };
    let mut text = analytics::render(body.join("\n").trim_end(), dialect);
    // Column names come from our own schema (`withdrawal_<iso code>_amt`), never from a user.
    for (written, actual) in renames {
        text = text.replace(written, actual);
    }
    text
}

/// The whole script `fxpipe catalog athena` prints: the database, one `CREATE EXTERNAL TABLE`
/// per table the lake has (a comment names the others), then every report's query.
pub fn script(database: &Database, lake_display: &str, tables: &LakeTables) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "-- Athena (engine v3) tables for the fxpipe lake at {lake_display}.\n\
         -- Run each statement in Athena. The schema and partitions come from each table's Delta\n\
         -- log: no column list, no crawler, nothing to repair after a new partition.\n"
    ));
    if tables.present.iter().any(|t| t.location.scheme() != "s3") {
        out.push_str(
            "-- These locations are not on S3: Athena cannot read them. Run this on the S3 lake\n\
             -- (--lake s3://bucket/prefix) to get the DDL to deploy.\n",
        );
    }
    out.push_str(&format!(
        "CREATE DATABASE IF NOT EXISTS `{}`;\n",
        database.as_str()
    ));
    for table in &tables.present {
        out.push_str(&ddl(database, table));
        out.push('\n');
    }
    if !tables.missing.is_empty() {
        let names: Vec<&str> = tables.missing.iter().map(|t| t.sql_name()).collect();
        out.push_str(&format!(
            "-- Not in this lake yet (no commit): {}. Run this command again after the job that writes it.\n",
            names.join(", ")
        ));
    }
    let processed = tables.present.iter().find(|t| t.table == Table::Processed);
    out.push_str("\n-- The analytics (fxpipe report NAME), in Trino SQL for Athena.\n");
    if processed.is_none() {
        out.push_str(
            "-- They read processed, which this lake does not have yet: run `fxpipe normalize`.\n",
        );
    }
    let renames = processed.map(converted_columns).unwrap_or_default();
    for (name, sql) in REPORTS {
        out.push_str(&format!(
            "\n{QUERY_MARKER}{name}\n{};\n",
            query(database, sql, &renames)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;

    fn db() -> Database {
        Database::new("bank_lake").unwrap()
    }

    #[test]
    fn queries_read_the_processed_table_of_the_database_only() {
        for (name, sql) in REPORTS {
            let rendered = query(&db(), sql, &[]);
            assert!(rendered.contains("FROM \"bank_lake\".processed"), "{name}");
            assert!(!rendered.contains('{'), "{name}: {rendered}");
            assert!(
                !rendered.contains(';'),
                "{name} holds a statement separator"
            );
            // Every table reference is qualified.
            let unqualified = rendered
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .filter(|w| w[0] == "FROM" && w[1] == "processed")
                .count();
            assert_eq!(unqualified, 0, "{name}");
            assert!(
                rendered.starts_with("SELECT") || rendered.starts_with("WITH"),
                "{name}"
            );
        }
    }

    #[test]
    fn ddl_is_one_statement_with_a_quoted_location() {
        let table = CatalogTable {
            table: Table::Processed,
            location: Url::parse("s3://bucket/it's/banktxn/processed/").unwrap(),
            columns: Vec::new(),
        };
        assert_eq!(
            ddl(&db(), &table),
            "CREATE EXTERNAL TABLE IF NOT EXISTS `bank_lake`.`processed` \
             LOCATION 's3://bucket/it''s/banktxn/processed/' TBLPROPERTIES ('table_type'='DELTA');"
        );
    }
}
