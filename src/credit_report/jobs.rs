//! The newest saved report of each job (`<lake>/_reports/<job>-<UTC timestamp>.json`), for the
//! page's reconciliation: what the last `ingest`, `load` and `normalize` said when they ran.

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::ObjectStoreExt;

use crate::jobs::JobError;
use crate::storage::Lake;

/// The jobs whose last run the page shows, in pipeline order.
const JOBS: [&str; 3] = ["ingest", "load", "normalize"];

/// One job's newest saved report.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub job: &'static str,
    /// The report's file name (its timestamp says when the job ran).
    pub file: String,
    /// The report's numbers that reconcile, as `name = value` lines.
    pub facts: Vec<(String, String)>,
}

/// The newest report of each job that has one. The names sort by their UTC timestamp, so the
/// newest is the largest name.
pub async fn latest(lake: &Lake) -> Result<Vec<JobRun>, JobError> {
    let prefix = StorePath::from("_reports");
    let names: Vec<String> = lake
        .store()
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
        .try_collect()
        .await
        .map_err(|source| lake.store_error("list", "_reports/", source))?;
    let mut runs = Vec::new();
    for job in JOBS {
        let Some(file) = names
            .iter()
            .filter(|n| n.starts_with(&format!("{job}-")) && n.ends_with(".json"))
            .max()
        else {
            continue;
        };
        let relative = format!("_reports/{file}");
        let bytes = lake
            .store()
            .get(&StorePath::from(relative.as_str()))
            .await
            .map_err(|source| lake.store_error("get", &relative, source))?
            .bytes()
            .await
            .map_err(|source| lake.store_error("get", &relative, source))?;
        // A report another version of fxpipe wrote may lack a field: show what is there.
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        runs.push(JobRun {
            job,
            file: file.clone(),
            facts: facts(job, &json),
        });
    }
    Ok(runs)
}

/// The fields of a job's report that the page shows.
fn facts(job: &str, json: &serde_json::Value) -> Vec<(String, String)> {
    let fields: &[&str] = match job {
        "ingest" => &[
            "source",
            "dates_requested",
            "dates_ingested",
            "dates_skipped",
            "failures",
            "rates_version",
        ],
        "load" => &[
            "rows_read",
            "rows_loaded",
            "rows_rejected",
            "rejected_by_reason",
            "files",
        ],
        _ => &[
            "base_currency",
            "rows_in",
            "rows_written",
            "unconverted",
            "unconverted_by_currency",
            "processed_version",
        ],
    };
    fields
        .iter()
        .filter_map(|field| {
            let value = json.get(*field)?;
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) => items.len().to_string(),
                serde_json::Value::Object(map) if map.is_empty() => "none".to_string(),
                serde_json::Value::Object(map) => map
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            Some((field.to_string(), text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::facts;

    #[test]
    fn a_load_report_shows_its_reconciling_counts() {
        let json = serde_json::json!({
            "rows_read": 18, "rows_loaded": 9, "rows_rejected": 9,
            "rejected_by_reason": {"bad_date": 1, "no_amount": 2},
            "files": [{}], "elapsed_ms": 5
        });
        let shown = facts("load", &json);
        assert_eq!(
            shown,
            [
                ("rows_read".to_string(), "18".to_string()),
                ("rows_loaded".to_string(), "9".to_string()),
                ("rows_rejected".to_string(), "9".to_string()),
                (
                    "rejected_by_reason".to_string(),
                    "bad_date 1, no_amount 2".to_string()
                ),
                ("files".to_string(), "1".to_string()),
            ]
        );
    }
}
