//! The lake's Delta tables in the Glue Data Catalog, registered with the AWS SDK (no crawler).
//!
//! Each table gets the entry Athena and EMR Spark need to read it as Delta: `EXTERNAL_TABLE`,
//! `table_type=DELTA` (Athena), `spark.sql.sources.provider=delta` and the serde `path` (Spark's
//! Delta source), the folder as the location, and no columns or partition keys (both engines
//! take them from the Delta log). A re-run updates the entries in place (`UpdateTable`), so the
//! catalog never holds a table twice and existing grants on it stay.
//!
//! Region and credentials come from the standard chain (`aws_config`): environment, shared
//! config and credentials files with profiles and SSO, web identity, ECS and EC2 metadata;
//! `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_GLUE`) points the client at a Glue-compatible
//! endpoint. No region is an error, never a silent default.

use aws_config::BehaviorVersion;
use aws_sdk_glue::error::{DisplayErrorContext, SdkError};
use aws_sdk_glue::types::{DatabaseInput, SerDeInfo, StorageDescriptor, TableInput};
use aws_sdk_glue::Client;
use tracing::info;

use super::{CatalogError, CatalogTable, Database};

/// What a registration did, per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    Created,
    Updated,
}

/// The outcome of [`register`].
#[derive(Debug, Clone)]
pub struct GlueReport {
    pub region: String,
    pub database_created: bool,
    /// Each table's name, location and whether it was created or updated.
    pub tables: Vec<(String, String, Registered)>,
}

/// The Glue table entry for one Delta table.
pub fn table_input(table: &CatalogTable) -> Result<TableInput, CatalogError> {
    let location = table.location.to_string();
    let storage = StorageDescriptor::builder()
        .location(&location)
        .serde_info(SerDeInfo::builder().parameters("path", &location).build())
        .build();
    TableInput::builder()
        .name(table.table.sql_name())
        .description(format!(
            "fxpipe Delta table {} (schema and partitions in its Delta log)",
            table.table.sql_name()
        ))
        .table_type("EXTERNAL_TABLE")
        .parameters("table_type", "DELTA")
        .parameters("spark.sql.sources.provider", "delta")
        .parameters("EXTERNAL", "TRUE")
        .storage_descriptor(storage)
        .set_partition_keys(Some(Vec::new()))
        .build()
        .map_err(|e| CatalogError::Glue {
            operation: "CreateTable",
            target: table.table.sql_name().to_string(),
            region: String::new(),
            message: e.to_string(),
        })
}

/// The error of one Glue call: the operation, what it was for, and the SDK's whole chain of
/// causes (service code and message, or the connection failure). The SDK's errors carry no
/// credentials.
fn glue_error<'a, E, R>(
    operation: &'static str,
    target: String,
    region: &'a str,
) -> impl FnOnce(SdkError<E, R>) -> CatalogError + 'a
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |error| CatalogError::Glue {
        operation,
        target,
        region: region.to_string(),
        message: DisplayErrorContext(&error).to_string(),
    }
}

/// Registers `tables` in `database`, creating the database when it is missing.
pub async fn register(
    database: &Database,
    tables: &[CatalogTable],
) -> Result<GlueReport, CatalogError> {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let region = config
        .region()
        .map(|r| r.to_string())
        .ok_or(CatalogError::NoRegion)?;
    let client = Client::new(&config);
    let name = database.as_str();
    let target = || format!("database {name}");

    let database_created = match client.get_database().name(name).send().await {
        Ok(_) => false,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_entity_not_found_exception()) =>
        {
            let input = DatabaseInput::builder()
                .name(name)
                .description("fxpipe lake (Delta tables)")
                .build()
                .map_err(|e| CatalogError::Glue {
                    operation: "CreateDatabase",
                    target: target(),
                    region: region.clone(),
                    message: e.to_string(),
                })?;
            match client.create_database().database_input(input).send().await {
                Ok(_) => true,
                // Created by someone else in between: it exists, which is all we need.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_already_exists_exception()) =>
                {
                    false
                }
                Err(e) => return Err(glue_error("CreateDatabase", target(), &region)(e)),
            }
        }
        Err(e) => return Err(glue_error("GetDatabase", target(), &region)(e)),
    };
    info!(database = name, %region, database_created, "glue database ready");

    let mut registered = Vec::new();
    for table in tables {
        let table_name = table.table.sql_name();
        let target = || format!("table {name}.{table_name}");
        let input = table_input(table)?;
        let created = client
            .create_table()
            .database_name(name)
            .table_input(input.clone())
            .send()
            .await;
        let outcome = match created {
            Ok(_) => Registered::Created,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                client
                    .update_table()
                    .database_name(name)
                    .table_input(input)
                    .send()
                    .await
                    .map_err(glue_error("UpdateTable", target(), &region))?;
                Registered::Updated
            }
            Err(e) => return Err(glue_error("CreateTable", target(), &region)(e)),
        };
        info!(table = table_name, outcome = ?outcome, "glue table registered");
        registered.push((table_name.to_string(), table.location.to_string(), outcome));
    }
    Ok(GlueReport {
        region,
        database_created,
        tables: registered,
    })
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;
    use crate::storage::Table;

    #[test]
    fn a_table_entry_carries_what_athena_and_spark_read_delta_with() {
        let location = "s3://bucket/lake/banktxn/processed/";
        let input = table_input(&CatalogTable {
            table: Table::Processed,
            location: Url::parse(location).unwrap(),
            columns: Vec::new(),
        })
        .unwrap();
        assert_eq!(input.name(), "processed");
        assert_eq!(input.table_type(), Some("EXTERNAL_TABLE"));
        let parameters = input.parameters().unwrap();
        assert_eq!(parameters["table_type"], "DELTA");
        assert_eq!(parameters["spark.sql.sources.provider"], "delta");
        assert_eq!(parameters["EXTERNAL"], "TRUE");
        assert_eq!(parameters.len(), 3);
        let storage = input.storage_descriptor().unwrap();
        assert_eq!(storage.location(), Some(location));
        let serde = storage.serde_info().unwrap().parameters().unwrap();
        assert_eq!(serde["path"], location);
        assert!(input.partition_keys().is_empty());
        assert!(storage.columns().is_empty());
    }
}
