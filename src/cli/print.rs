//! Printing: query results (`--format table|csv|json`) and every other line the CLI writes to
//! stdout.
//!
//! CSV and JSON stream batch by batch (a query's result can be larger than memory). The table
//! format needs the rows it shows to size its columns, so it keeps only the first `--max-rows`
//! and counts the rest as they stream past.
//!
//! All stdout writes go through [`stdout`], which notes a closed pipe (`fxpipe sql … | head`):
//! Rust ignores SIGPIPE, so the write fails with `EPIPE` and the error travels up like any other;
//! the edge in `cli::main` then sees [`stdout_closed`] and exits quietly instead of reporting it.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::RecordBatch;
use datafusion::dataframe::DataFrame;
use futures::StreamExt;

/// Output formats of `fxpipe sql` and `fxpipe report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text table (the first --max-rows rows).
    Table,
    /// CSV with a header row (every row).
    Csv,
    /// One JSON object per line, NDJSON (every row).
    Json,
}

/// How many rows `--format table` shows; `None` shows all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxRows(pub Option<usize>);

impl MaxRows {
    /// The default, as in datafusion-cli and DuckDB: enough to see the shape of a result
    /// without a big one scrolling the terminal away (or being held in memory to align it).
    pub const DEFAULT: &'static str = "40";
    /// [`Self::DEFAULT`] as a value (for the reports `quickstart` prints).
    pub const DEFAULT_VALUE: MaxRows = MaxRows(Some(40));
}

/// Parses `--max-rows`: a row count, or `0` / `inf` for no limit.
pub fn max_rows(text: &str) -> Result<MaxRows, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("inf") {
        return Ok(MaxRows(None));
    }
    match text.parse::<usize>() {
        Ok(0) => Ok(MaxRows(None)),
        Ok(n) => Ok(MaxRows(Some(n))),
        Err(_) => Err(format!(
            "{text:?} is not a row count (a whole number; 0 or inf for no limit)"
        )),
    }
}

/// Set once a write to stdout found the reading end closed.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether stdout's reader went away (a write failed with `EPIPE`).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Stdout, noting a closed pipe. Use it (never `println!`, which panics on `EPIPE`) for every
/// line the CLI prints.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

/// See [`stdout`].
pub struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    fn note(result: std::io::Result<usize>) -> std::io::Result<usize> {
        if let Err(e) = &result {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
            }
        }
        result
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Self::note(self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Self::note(self.0.flush().map(|()| 0)).map(|_| ())
    }
}

/// Runs the frame and writes its rows to stdout. Returns the number of rows in the result.
pub async fn print(frame: DataFrame, format: Format, max_rows: MaxRows) -> anyhow::Result<u64> {
    let mut out = BufWriter::new(stdout());
    let mut rows = 0u64;
    let mut stream = frame.execute_stream().await?;
    match format {
        Format::Table => {
            let limit = max_rows.0.unwrap_or(usize::MAX);
            let mut kept: Vec<RecordBatch> = Vec::new();
            let mut shown = 0usize;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                let take = batch.num_rows().min(limit - shown);
                if take > 0 {
                    kept.push(batch.slice(0, take));
                    shown += take;
                }
            }
            let table =
                arrow::util::pretty::pretty_format_batches_with_schema(stream.schema(), &kept)?;
            writeln!(out, "{table}")?;
            if rows > shown as u64 {
                writeln!(
                    out,
                    "{rows} rows, {shown} shown (--max-rows 0 shows all; --format csv or json prints every row)"
                )?;
            }
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
            writer.finish()?;
        }
    }
    out.flush()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_rows_takes_counts_zero_and_inf() {
        assert_eq!(max_rows("40"), Ok(MaxRows(Some(40))));
        assert_eq!(max_rows("0"), Ok(MaxRows(None)));
        assert_eq!(max_rows("inf"), Ok(MaxRows(None)));
        assert_eq!(max_rows("INF"), Ok(MaxRows(None)));
        assert!(max_rows("-1").is_err());
        assert!(max_rows("ten").is_err());
    }
}
