//! `fxpipe catalog athena|glue`: the lake's tables in Athena or the Glue Data Catalog.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use fxpipe::catalog::{self, athena, glue, Database};
use fxpipe::storage::Lake;

use super::print;

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Print Athena DDL for the lake's Delta tables (no crawler, no column lists) and the
    /// analytics reports rewritten for Athena.
    Athena(AthenaArgs),
    /// Register the lake's Delta tables in the Glue Data Catalog (creates the database if
    /// missing; a re-run updates the entries). Credentials and region from the AWS chain.
    Glue(GlueArgs),
}

#[derive(Debug, Args)]
pub struct AthenaArgs {
    /// Database (schema) the tables go in: lowercase letters, digits and underscores.
    #[arg(long, env = "FXPIPE_CATALOG_DATABASE")]
    database: String,
    /// Write the script to this file instead of stdout.
    #[arg(short, long, env = "FXPIPE_CATALOG_OUTPUT")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GlueArgs {
    /// Glue database the tables go in: lowercase letters, digits and underscores.
    #[arg(long, env = "FXPIPE_CATALOG_DATABASE")]
    database: String,
}

pub async fn run(lake: &Lake, command: CatalogCommand) -> anyhow::Result<()> {
    match command {
        CatalogCommand::Athena(args) => {
            let database = Database::new(&args.database)?;
            let tables = catalog::lake_tables(lake).await?;
            let script = athena::script(&database, lake.display(), &tables);
            match args.output {
                Some(path) => {
                    std::fs::write(&path, &script)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    outln!(
                        "wrote Athena DDL for {} tables and {} queries to {}",
                        tables.present.len(),
                        fxpipe::jobs::analytics::REPORTS.len(),
                        path.display()
                    )?;
                }
                None => write!(print::stdout(), "{script}")?,
            }
        }
        CatalogCommand::Glue(args) => {
            let database = Database::new(&args.database)?;
            let tables = catalog::lake_tables(lake).await?;
            let report = glue::register(&database, &tables.present).await?;
            let verb = if report.database_created {
                "created"
            } else {
                "exists"
            };
            outln!(
                "glue database {} ({}): {verb}",
                database.as_str(),
                report.region
            )?;
            for (name, location, outcome) in &report.tables {
                let outcome = match outcome {
                    glue::Registered::Created => "created",
                    glue::Registered::Updated => "updated",
                };
                outln!("  {name}: {outcome} at {location}")?;
            }
            for table in &tables.missing {
                outln!("  {}: not in this lake yet, skipped", table.sql_name())?;
            }
            if tables.present.iter().any(|t| t.location.scheme() != "s3") {
                outln!(
                    "  note: these locations are not on S3; Athena and EMR on AWS cannot read them"
                )?;
            }
        }
    }
    Ok(())
}
