//! Printing query results: `--format table|csv|json`.
//!
//! CSV and JSON stream batch by batch (a query's result can be larger than memory); the table
//! format needs every row to size its columns, so it collects.

use std::io::Write;

use arrow::array::RecordBatch;
use datafusion::dataframe::DataFrame;
use futures::StreamExt;

/// Output formats of `fxpipe sql` and `fxpipe report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per line (NDJSON).
    Json,
}

/// Runs the frame and writes its rows to stdout. Returns the number of rows.
pub async fn print(frame: DataFrame, format: Format) -> anyhow::Result<u64> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut rows = 0u64;
    match format {
        Format::Table => {
            let batches: Vec<RecordBatch> = frame.collect().await?;
            rows = batches.iter().map(|b| b.num_rows() as u64).sum();
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(&batches)?
            )?;
        }
        Format::Csv => {
            let mut stream = frame.execute_stream().await?;
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
            let mut stream = frame.execute_stream().await?;
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
