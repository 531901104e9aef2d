//! The cluster's scaling study (issue 23), `cargo bench --bench pipeline -- --scaling`: the
//! same normalize on 1, 2 and 4 executors of one task slot each, every executor pinned to the
//! same single CPU (`taskset -c 1`), so the executors' total CPU is held equal and the time
//! added per executor is the distribution's own cost. After each job it reads, per stage, the
//! rows in and out and the shuffle-read bytes from the scheduler's REST API
//! (`/api/job/ID/stages?plan_format=metrics`), and the bytes of shuffle files the stage wrote
//! from the executors' work dirs: which costs grow with the data, which with the executors.

use std::path::Path;

use serde_json::{json, Value};

use super::cluster::{LoopbackCluster, Shape};
use super::measure::{measure, Pacing, Samples};
use super::{fxpipe, SHAPE};

/// The executor counts compared.
const EXECUTORS: [usize; 3] = [1, 2, 4];
/// The one CPU every executor runs on.
const EXECUTOR_CPUS: &str = "1";

/// One cluster shape at one size.
pub struct ScalingRow {
    pub rows: u64,
    pub executors: usize,
    pub normalize: Samples,
    /// Per stage of the last run: rows in and out, shuffle bytes written and read.
    pub stages: Vec<Value>,
}

/// The newest job the scheduler knows.
fn newest_job(cluster: &LoopbackCluster) -> Option<String> {
    let jobs: Value = serde_json::from_str(&cluster.http_get("/api/jobs")?).ok()?;
    let jobs = match &jobs {
        Value::Array(list) => list.clone(),
        other => other["jobs"].as_array().cloned().unwrap_or_default(),
    };
    jobs.iter()
        .max_by_key(|job| job["start_time"].as_u64().unwrap_or(0))
        .and_then(|job| job["job_id"].as_str().map(str::to_string))
}

/// The sum of every `NAME=` metric in a stage plan rendered with its metrics.
fn metric_sum(plan: &str, name: &str) -> u64 {
    let key = format!("{name}=");
    plan.match_indices(&key)
        .filter_map(|(at, _)| {
            let rest = &plan[at + key.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}

/// Each stage of `job`: its rows, the shuffle bytes it wrote (files on disk) and read.
fn stages_of(cluster: &LoopbackCluster, job: &str) -> Vec<Value> {
    let written = cluster.shuffle_bytes(job);
    let path = format!("/api/job/{job}/stages?plan_format=metrics");
    let stages: Value = cluster
        .http_get(&path)
        .and_then(|body| serde_json::from_str(&body).ok())
        .unwrap_or(Value::Null);
    stages["stages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|stage| {
            let id = stage["stage_id"].as_str().unwrap_or("?").to_string();
            let plan = stage["stage_plan"].as_str().unwrap_or("");
            json!({
                "stage": id,
                "input_rows": stage["input_rows"],
                "output_rows": stage["output_rows"],
                "elapsed_compute": stage["elapsed_compute"],
                "shuffle_bytes_written": written.get(&id).copied().unwrap_or(0),
                "shuffle_bytes_read": metric_sum(plan, "decoded_bytes"),
                "remote_partitions_read": metric_sum(plan, "remote_partitions"),
            })
        })
        .collect()
}

/// The study at one size: a lake loaded once (embedded, untimed), then normalize on each
/// cluster shape, `pacing.runs` times.
pub fn bench(
    pacing: &Pacing,
    cache: &Path,
    rates: &Path,
    csv: &Path,
    rows: u64,
) -> Vec<ScalingRow> {
    let lake = cache.join(format!("lake-{rows}-scaling"));
    let _ = std::fs::remove_dir_all(&lake);
    let lake_text = lake.to_str().expect("utf-8 path");
    let source = format!("file://{}", rates.display());
    for args in [
        vec![
            "--lake", lake_text, "ingest", "--source", &source, "--from", SHAPE.from, "--to",
            SHAPE.to,
        ],
        vec![
            "--lake",
            lake_text,
            "load",
            csv.to_str().expect("utf-8 path"),
        ],
    ] {
        let status = fxpipe(&args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("fxpipe");
        assert!(status.success(), "fxpipe {args:?} failed");
    }
    let mut result = Vec::new();
    for executors in EXECUTORS {
        let shape = Shape {
            executors,
            vcores: Some(1),
            cpus: Some(EXECUTOR_CPUS),
            fast_loss_detection: false,
        };
        let Some(cluster) = LoopbackCluster::start_shaped(cache, shape) else {
            break;
        };
        let address = cluster.address();
        let mut row = ScalingRow {
            rows,
            executors,
            normalize: Samples::default(),
            stages: Vec::new(),
        };
        for run in 1..=pacing.runs {
            eprintln!("scaling: {rows} rows, {executors} executors, run {run}");
            let mut command = fxpipe(&["--lake", lake_text, "--cluster", &address, "normalize"]);
            row.normalize.push(measure(pacing, &mut command).0);
        }
        if let Some(job) = newest_job(&cluster) {
            row.stages = stages_of(&cluster, &job);
        }
        result.push(row);
    }
    let _ = std::fs::remove_dir_all(&lake);
    result
}

/// The study's markdown table: time per shape, and per stage the shuffle bytes.
pub fn table(rows: &[ScalingRow]) -> String {
    let mut out = format!(
        "| rows | executors (1 slot each, all on CPU {EXECUTOR_CPUS}) | normalize s | × 1 executor | \
         stages: rows in → out, shuffle MB written / read |\n|---:|---:|---:|---:|---|\n"
    );
    for row in rows {
        let one = rows
            .iter()
            .find(|r| r.rows == row.rows && r.executors == 1)
            .map(|r| r.normalize.median_seconds())
            .unwrap_or(f64::NAN);
        let stages: Vec<String> = row
            .stages
            .iter()
            .map(|s| {
                let mb = |key: &str| s[key].as_u64().unwrap_or(0) as f64 / 1e6;
                format!(
                    "{}: {} → {}, {:.1} / {:.1}",
                    s["stage"].as_str().unwrap_or("?"),
                    s["input_rows"],
                    s["output_rows"],
                    mb("shuffle_bytes_written"),
                    mb("shuffle_bytes_read")
                )
            })
            .collect();
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.2}× | {} |\n",
            row.rows,
            row.executors,
            row.normalize.median_seconds(),
            row.normalize.median_seconds() / one,
            stages.join("; ")
        ));
    }
    out
}

/// Every run and stage, for `latest-scaling.json`.
pub fn json(rows: &[ScalingRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|row| {
                json!({
                    "rows": row.rows,
                    "executors": row.executors,
                    "vcores_each": 1,
                    "executor_cpus": EXECUTOR_CPUS,
                    "normalize_seconds": row.normalize.seconds(),
                    "normalize_median_seconds": row.normalize.median_seconds(),
                    "stages_of_last_run": row.stages,
                })
            })
            .collect(),
    )
}
