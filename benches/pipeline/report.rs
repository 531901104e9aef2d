//! The benchmark's output: a markdown table (printed, and `benches/results/latest.md` for the
//! README) and `benches/results/latest.json` with every run and the machine it ran on.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use super::measure::{Pacing, Samples};
use super::peers::PeerStep;
use super::{DataShape, SizeResult};

/// Seconds as "median (fastest–slowest)" when there is more than one run.
fn seconds_cell(samples: &Samples) -> String {
    let median = samples.median_seconds();
    match samples.0.len() {
        0 | 1 => format!("{median:.2}"),
        _ => {
            let (min, max) = samples.range_seconds();
            format!("{median:.2} ({min:.2}–{max:.2})")
        }
    }
}

/// fxpipe's time over the peer's: below 1 fxpipe is faster.
fn ratio_cell(fxpipe: f64, peer: f64) -> String {
    format!("**{:.2}×**", fxpipe / peer)
}

/// One row of the table: fxpipe's cells, then the peer's when there is one.
struct Row {
    step: String,
    fxpipe: [String; 3],
    peer: Option<[String; 4]>,
}

fn dash() -> [String; 4] {
    std::array::from_fn(|_| "—".to_string())
}

fn fxpipe_cells(samples: &Samples, units: u64, unit: &str) -> [String; 3] {
    [
        seconds_cell(samples),
        format!("{:.0} {unit}", units as f64 / samples.median_seconds()),
        format!("{:.0}", samples.median_peak_rss_mb()),
    ]
}

/// A DuckDB step's cells: its process time (fastest–slowest) and its statement's own median
/// time, the ratio of fxpipe's process time to DuckDB's, and DuckDB's peak RSS.
fn peer_cells(step: &str, fxpipe: &Samples, peer: &PeerStep) -> [String; 4] {
    [
        step.to_string(),
        format!(
            "{} (statement {:.2})",
            seconds_cell(&peer.process),
            peer.median_statement_seconds()
        ),
        ratio_cell(fxpipe.median_seconds(), peer.process.median_seconds()),
        format!("{:.0}", peer.process.median_peak_rss_mb()),
    ]
}

fn rows_of(size: &SizeResult, days: u64, peers: bool) -> Vec<Row> {
    let rows = size.rows;
    let peer = |step: &str, fxpipe: &Samples, of: fn(&super::PeerResult) -> &PeerStep| {
        peers.then(|| match &size.peer {
            Some(p) => peer_cells(step, fxpipe, of(p)),
            None => dash(),
        })
    };
    let normalize_row =
        |step: &str, peer_step: &str, of: fn(&super::PeerResult) -> &PeerStep| Row {
            step: step.to_string(),
            fxpipe: fxpipe_cells(&size.normalize, rows, "rows/s"),
            peer: peer(peer_step, &size.normalize, of),
        };
    let mut table = vec![
        Row {
            step: format!("ingest ({days} days)"),
            fxpipe: fxpipe_cells(&size.ingest, days, "days/s"),
            peer: peers.then(dash),
        },
        Row {
            step: "load".to_string(),
            fxpipe: fxpipe_cells(&size.load, rows, "rows/s"),
            peer: peer("copy CSV → Parquet (auto-detected types)", &size.load, |p| &p.copy),
        },
        normalize_row(
            "normalize",
            "**like for like**: typed copy of fxpipe's tables, ASOF join, max rate age 3, DECIMAL(38,2) out",
            |p| &p.typed,
        ),
    ];
    if peers {
        table.push(normalize_row(
            "normalize (same runs)",
            "like for like, `preserve_insertion_order = false`",
            |p| &p.typed_unordered,
        ));
        table.push(normalize_row(
            "normalize (same runs)",
            "looser: from the auto-typed copy, re-parses dates and amounts, exact value date only, DOUBLE math",
            |p| &p.loose,
        ));
        if let Some(agreement) = size.peer.as_ref().and_then(|p| p.agreement.as_ref()) {
            let verdict = match agreement {
                Ok(report) => format!(
                    "agree: {} months, {} rows; largest difference of a month's sum {} cents",
                    report["months"], report["rows"], report["largest_sum_difference_cents"]
                ),
                Err(_) => "**DISAGREE** (see latest.json)".to_string(),
            };
            table.push(Row {
                step: "outputs compared per month (rows, converted amounts, sums)".to_string(),
                fxpipe: std::array::from_fn(|_| "—".to_string()),
                peer: Some([verdict, "—".into(), "—".into(), "—".into()]),
            });
        }
    }
    if let Some(cluster) = &size.cluster {
        for (step, samples, embedded) in [
            ("load", &cluster.load, &size.load),
            ("normalize", &cluster.normalize, &size.normalize),
        ] {
            let mut cells = fxpipe_cells(samples, rows, "rows/s");
            cells[2] = format!(
                "{} client, {:.0} per executor",
                cells[2], cluster.executor_peak_rss_mb
            );
            table.push(Row {
                step: format!(
                    "{step} on a loopback cluster (scheduler + 2 executors, alternating with embedded): **{:.2}× embedded**",
                    samples.median_seconds() / embedded.median_seconds()
                ),
                fxpipe: cells,
                peer: peers.then(dash),
            });
        }
    }
    if let (Some(seconds), Some(cluster)) = (size.recovery, &size.cluster) {
        table.push(Row {
            step: if seconds >= 0.0 {
                format!(
                    "normalize on the cluster, one of 2 executors killed 40% in (executor timeout 10 s; 1 run): {:.2}× undisturbed",
                    seconds / cluster.normalize.median_seconds()
                )
            } else {
                "normalize on the cluster, one of 2 executors killed 40% in: **failed** (see its output)".to_string()
            },
            fxpipe: [format!("{:.2}", seconds.abs()), format!("{:.0} rows/s", rows as f64 / seconds.abs()), "—".to_string()],
            peer: peers.then(dash),
        });
    }
    table.push(total_row(size, peers));
    if let Some(daily) = &size.daily {
        table.extend(daily_rows(size, daily, peers));
    }
    table
}

/// The daily job beside the full normalize, with its targets (issue 24).
fn daily_rows(size: &SizeResult, daily: &super::daily::DailyResult, peers: bool) -> Vec<Row> {
    let full = size.normalize.median_seconds();
    let load = super::measure::median(daily.load_seconds.clone());
    let run = daily.run.median_seconds();
    let beyond_load = run - load;
    let met = |ok: bool| if ok { "met" } else { "**missed**" };
    let nothing = daily.nothing_new.median_seconds();
    vec![
        Row {
            step: format!(
                "daily `fxpipe run`: 1 new day ({} rows, 1 rate day); its load {load:.2} s; the rest {:.1}% of a full normalize (target ≤ 5%: {})",
                daily.rows_per_day,
                100.0 * beyond_load / full,
                met(beyond_load <= 0.05 * full)
            ),
            fxpipe: [
                seconds_cell(&daily.run),
                format!("{:.0} rows/s", daily.rows_per_day as f64 / run),
                format!("{:.0}", daily.run.median_peak_rss_mb()),
            ],
            peer: peers.then(dash),
        },
        Row {
            step: format!(
                "daily `fxpipe run`, nothing new (target ≤ 1 s: {})",
                met(nothing <= 1.0)
            ),
            fxpipe: [
                seconds_cell(&daily.nothing_new),
                "—".to_string(),
                format!("{:.0}", daily.nothing_new.median_peak_rss_mb()),
            ],
            peer: peers.then(dash),
        },
    ]
}

/// load + normalize, from the medians, against copy + normalize.
fn total_row(size: &SizeResult, peers: bool) -> Row {
    let fxpipe = size.load.median_seconds() + size.normalize.median_seconds();
    let rss = size
        .load
        .median_peak_rss_mb()
        .max(size.normalize.median_peak_rss_mb());
    let peer = size.peer.as_ref().map(|p| {
        let seconds = p.copy.process.median_seconds() + p.typed.process.median_seconds();
        let rss = p
            .copy
            .process
            .median_peak_rss_mb()
            .max(p.typed.process.median_peak_rss_mb());
        [
            "copy + like-for-like normalize".to_string(),
            format!("{seconds:.2}"),
            ratio_cell(fxpipe, seconds),
            format!("{rss:.0}"),
        ]
    });
    Row {
        step: "**load + normalize**".to_string(),
        fxpipe: [
            format!("{fxpipe:.2}"),
            format!("{:.0} rows/s", size.rows as f64 / fxpipe),
            format!("{rss:.0}"),
        ],
        peer: peers.then(|| peer.unwrap_or_else(dash)),
    }
}

/// The markdown table of every size.
pub fn table(sizes: &[SizeResult], shape: &DataShape, pacing: &Pacing, peers: bool) -> String {
    let runs = pacing.runs;
    let mut out =
        format!("| rows | step | fxpipe s (median of {runs}) | throughput | fxpipe peak RSS MB |");
    if peers {
        out.push_str(" DuckDB step | DuckDB s | fxpipe / DuckDB | DuckDB peak RSS MB |");
    }
    out.push_str("\n|---:|---|---:|---:|---:|");
    if peers {
        out.push_str("---|---:|---:|---:|");
    }
    out.push('\n');
    for size in sizes {
        for row in rows_of(size, shape.rate_days(), peers) {
            let cells = row.fxpipe.join(" | ");
            out.push_str(&format!("| {} | {} | {cells} |", size.rows, row.step));
            if let Some(peer) = row.peer {
                out.push_str(&format!(" {} |", peer.join(" | ")));
            }
            out.push('\n');
        }
    }
    out
}

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The machine and source the numbers belong to.
pub fn machine() -> Value {
    let memory_gib = first_line_with("/proc/meminfo", "MemTotal")
        .and_then(|kb| kb.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "memory_gib": memory_gib,
        "cpu": first_line_with("/proc/cpuinfo", "model name"),
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "commit": git(&["rev-parse", "HEAD"]),
        "uncommitted_changes": dirty,
    })
}

fn samples_json(samples: &Samples) -> Value {
    json!({
        "seconds": samples.seconds(),
        "median_seconds": samples.median_seconds(),
        "peak_rss_mb": samples.peak_rss_mb(),
        "median_peak_rss_mb": samples.median_peak_rss_mb(),
    })
}

fn size_json(size: &SizeResult) -> Value {
    let mut fxpipe = json!({
        "ingest": samples_json(&size.ingest),
        "load": samples_json(&size.load),
        "normalize": samples_json(&size.normalize),
    });
    if let Some(cluster) = &size.cluster {
        fxpipe["loopback_cluster"] = json!({
            "load": samples_json(&cluster.load),
            "normalize": samples_json(&cluster.normalize),
            "executor_peak_rss_mb": cluster.executor_peak_rss_mb,
            "load_over_embedded": cluster.load.median_seconds() / size.load.median_seconds(),
            "normalize_over_embedded":
                cluster.normalize.median_seconds() / size.normalize.median_seconds(),
        });
    }
    if let Some(seconds) = size.recovery {
        fxpipe["loopback_cluster_one_executor_killed_40_percent_in"] =
            json!({ "seconds": seconds });
    }
    if let Some(daily) = &size.daily {
        fxpipe["daily"] = json!({
            "rows_per_day": daily.rows_per_day,
            "run": samples_json(&daily.run),
            "load_step_seconds": daily.load_seconds,
            "months_recomputed": daily.months_recomputed,
            "nothing_new": samples_json(&daily.nothing_new),
        });
    }
    let mut result = json!({ "rows": size.rows, "csv_bytes": size.csv_bytes, "fxpipe": fxpipe });
    if let Some(peer) = &size.peer {
        let agreement = match &peer.agreement {
            Some(Ok(report)) => report.clone(),
            Some(Err(output)) => json!({ "agree": false, "output": output }),
            None => Value::Null,
        };
        result["duckdb"] = json!({
            "copy": peer.copy.json(),
            "typed_inputs_untimed": peer.typed_inputs,
            "normalize_like_for_like": peer.typed.json(),
            "normalize_like_for_like_no_insertion_order": peer.typed_unordered.json(),
            "normalize_looser_double_math": peer.loose.json(),
            "agreement_with_fxpipe": agreement,
        });
        let normalize = size.normalize.median_seconds();
        result["ratios"] = json!({
            "load_over_duckdb_copy": size.load.median_seconds() / peer.copy.process.median_seconds(),
            "normalize_over_duckdb_like_for_like": normalize / peer.typed.process.median_seconds(),
            "normalize_over_duckdb_like_for_like_statement":
                normalize / peer.typed.median_statement_seconds(),
            "normalize_over_duckdb_like_for_like_no_insertion_order":
                normalize / peer.typed_unordered.process.median_seconds(),
            "normalize_over_duckdb_looser": normalize / peer.loose.process.median_seconds(),
        });
    }
    result
}

/// Everything the run measured, with the machine, data shape and pacing.
pub struct Results<'a> {
    pub sizes: &'a [SizeResult],
    pub shape: &'a DataShape,
    pub pacing: &'a Pacing,
    pub peers: Option<Value>,
}

impl Results<'_> {
    fn json(&self) -> Value {
        json!({
            "machine": machine(),
            "runs_per_step": self.pacing.runs,
            "idle_seconds_before_each_run": self.pacing.idle.as_secs_f64(),
            "data": self.shape.json(),
            "peers": self.peers,
            "sizes": self.sizes.iter().map(size_json).collect::<Vec<_>>(),
        })
    }

    fn markdown(&self, table: &str) -> String {
        let machine = machine();
        let text = |key: &str| machine[key].as_str().unwrap_or("?").to_string();
        let cores = machine["nproc"].as_u64().unwrap_or(0);
        let memory = machine["memory_gib"].as_f64().unwrap_or(0.0);
        format!(
            "Measured {} on {cores} cores ({}), {memory} GiB, commit {}; {}.\n\n{table}",
            text("date"),
            text("cpu"),
            text("commit").chars().take(10).collect::<String>(),
            self.shape.describe(),
        )
    }

    /// Writes `latest.json` and `latest.md` into `dir`.
    pub fn write(&self, dir: &Path, table: &str) {
        std::fs::create_dir_all(dir).expect("benches/results");
        let json = serde_json::to_string_pretty(&self.json()).expect("results as JSON");
        std::fs::write(dir.join("latest.json"), json + "\n").expect("write latest.json");
        std::fs::write(dir.join("latest.md"), self.markdown(table)).expect("write latest.md");
    }
}
