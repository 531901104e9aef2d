//! `-o FILE`: a query's or report's result written to a file, in the format its extension names.
//!
//! The result streams batch by batch into the writer (it can be larger than memory; Parquet
//! holds one row group at a time). Decimals stay exact: Parquet keeps `Decimal128`, CSV and
//! JSON carry the decimal's exact text, never a float.
//!
//! The rows go to a temporary file beside FILE, renamed over it only once the last batch is
//! written and synced: a query that fails half-way leaves FILE as it was (absent, or its old
//! content), never half a result that looks like a whole one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::StreamExt;

/// The file formats of `-o`, told by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// `.csv`: a header row, then every row.
    Csv,
    /// `.jsonl`, `.ndjson` or `.json`: one JSON object per line (a `.json` file is JSON lines
    /// too, not one array, so it can be written and read a row at a time).
    JsonLines,
    /// `.parquet`: typed columns (decimals stay Decimal128), zstd-compressed.
    Parquet,
}

/// What the error for an unknown extension lists.
const SUPPORTED: &str = ".csv, .jsonl, .ndjson, .json (JSON lines) or .parquet";

impl FileFormat {
    /// The format FILE's extension names (case-insensitive).
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Ok(Self::Csv),
            Some("jsonl" | "ndjson" | "json") => Ok(Self::JsonLines),
            Some("parquet") => Ok(Self::Parquet),
            Some(other) => anyhow::bail!(
                "-o {}: .{other} is not a format fxpipe writes; use {SUPPORTED}",
                path.display()
            ),
            None => anyhow::bail!(
                "-o {}: the file needs an extension that names its format: {SUPPORTED}",
                path.display()
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "CSV",
            Self::JsonLines => "JSON lines",
            Self::Parquet => "Parquet",
        }
    }
}

/// The temporary file beside the target; removed when dropped unless [`Self::persist`] renamed
/// it over the target (so an error or a panic anywhere in between leaves nothing behind).
pub(super) struct Pending {
    temp: PathBuf,
    done: bool,
}

impl Pending {
    pub(super) fn create(target: &Path) -> anyhow::Result<(Self, File)> {
        let name = target
            .file_name()
            .with_context(|| format!("-o {}: not a file name", target.display()))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".fxpipe-{}.tmp", std::process::id()));
        let temp = target.with_file_name(temp_name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .with_context(|| format!("cannot create {}", temp.display()))?;
        Ok((Self { temp, done: false }, file))
    }

    pub(super) fn persist(mut self, file: File, target: &Path) -> anyhow::Result<()> {
        file.sync_all()
            .with_context(|| format!("cannot write {}", self.temp.display()))?;
        drop(file);
        std::fs::rename(&self.temp, target).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.temp.display(),
                target.display()
            )
        })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Runs the frame and writes its rows to `path` in `format`. Returns the number of rows.
///
/// Ctrl-C (SIGINT) stops the write like an error does: the temporary is removed and FILE is
/// left as it was (without this, the signal would end the process and leave the temporary).
pub async fn write(frame: DataFrame, path: &Path, format: FileFormat) -> anyhow::Result<u64> {
    let (pending, file) = Pending::create(path)?;
    let (rows, file) = tokio::select! {
        written = write_rows(frame, file, format) => written?,
        _ = tokio::signal::ctrl_c() => {
            return Err(super::errors::Interrupted(format!(
                "{} was not written",
                path.display()
            ))
            .into())
        }
    };
    pending.persist(file, path)?;
    Ok(rows)
}

/// Streams the frame's rows into `file`; returns their number and the finished file.
async fn write_rows(
    frame: DataFrame,
    file: File,
    format: FileFormat,
) -> anyhow::Result<(u64, File)> {
    let mut stream = frame.execute_stream().await?;
    let mut rows = 0u64;
    let file = match format {
        FileFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(BufWriter::new(file));
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
            // A result with no rows still gets its header line.
            if rows == 0 {
                writer.write(&RecordBatch::new_empty(stream.schema()))?;
            }
            finish(writer.into_inner())?
        }
        FileFormat::JsonLines => {
            let mut writer = arrow::json::LineDelimitedWriter::new(BufWriter::new(file));
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
            writer.finish()?;
            finish(writer.into_inner())?
        }
        FileFormat::Parquet => {
            let properties = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let schema = without_views(&stream.schema());
            let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties))?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                let columns = batch
                    .columns()
                    .iter()
                    .zip(schema.fields())
                    .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
                    .collect::<Result<Vec<_>, _>>()?;
                writer.write(&RecordBatch::try_new(Arc::clone(&schema), columns)?)?;
            }
            writer.into_inner()?
        }
    };
    Ok((rows, file))
}

/// The schema with DataFusion's view types (`Utf8View`, `BinaryView`, what its Parquet scans
/// return) as plain `Utf8`/`Binary`: the Arrow schema stored in the file names them, and
/// readers older than Arrow 16 (and some non-Arrow ones) cannot open a file that says
/// `string_view`. The Parquet column itself is the same UTF-8 byte array either way.
fn without_views(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Utf8View => field.as_ref().clone().with_data_type(DataType::Utf8),
            DataType::BinaryView => field.as_ref().clone().with_data_type(DataType::Binary),
            _ => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn finish(mut writer: BufWriter<File>) -> anyhow::Result<File> {
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| anyhow::Error::new(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_names_the_format() {
        assert_eq!(FileFormat::of(Path::new("a.csv")).unwrap(), FileFormat::Csv);
        assert_eq!(FileFormat::of(Path::new("a.CSV")).unwrap(), FileFormat::Csv);
        for name in ["a.jsonl", "a.ndjson", "a.json"] {
            assert_eq!(
                FileFormat::of(Path::new(name)).unwrap(),
                FileFormat::JsonLines
            );
        }
        assert_eq!(
            FileFormat::of(Path::new("dir/a.parquet")).unwrap(),
            FileFormat::Parquet
        );
        let error = FileFormat::of(Path::new("a.xlsx")).unwrap_err().to_string();
        assert!(
            error.contains(".xlsx") && error.contains(".parquet"),
            "{error}"
        );
        let error = FileFormat::of(Path::new("result")).unwrap_err().to_string();
        assert!(error.contains(".csv"), "{error}");
    }
}
