//! Printing: query results (`--format table|csv|json|markdown`) and every other line the CLI
//! writes to stdout.
//!
//! CSV, JSON and Markdown stream batch by batch (a query's result can be larger than memory).
//! The table format needs the rows it shows to size its columns, so it keeps only the first
//! `--max-rows` and counts the rest as they stream past.
//!
//! The table is for people: numbers align right, and money columns name their currency in the
//! header (`deposit_sgd_amt (SGD)`), since `_sgd_` in a column name is only the
//! Athena-compatible convention and may hold another base currency. CSV and JSON stay exactly
//! as the engine returns them, for programs.
//!
//! All stdout writes go through [`stdout`], which notes a closed pipe (`fxpipe sql … | head`):
//! Rust ignores SIGPIPE, so the write fails with `EPIPE` and the error travels up like any other;
//! the edge in `cli::main` then sees [`stdout_closed`] and exits quietly instead of reporting it.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use comfy_table::{Cell, CellAlignment, Table};
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
    /// A GitHub pipe table, for pasting into tickets (every row; `|` in values escaped).
    Markdown,
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

/// Set by `--log-format json`: the CLI's own stderr lines are JSON objects too.
static JSON_STDERR: AtomicBool = AtomicBool::new(false);

pub fn set_json_stderr() {
    JSON_STDERR.store(true, Ordering::Relaxed);
}

pub fn json_stderr() -> bool {
    JSON_STDERR.load(Ordering::Relaxed)
}

/// A line for the person (or collector) watching stderr, not part of the result: `message` as
/// text, or with `--log-format json` one JSON object shaped like tracing's JSON lines
/// (`timestamp`, `level`, `fields` holding `message` and `fields`' members, `target`).
pub fn stderr_note(level: &str, message: &str, fields: serde_json::Value) {
    if json_stderr() {
        let mut all = serde_json::Map::new();
        all.insert("message".to_string(), message.into());
        if let serde_json::Value::Object(extra) = fields {
            all.extend(extra);
        }
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": level,
            "fields": all,
            "target": "fxpipe",
        });
        eprintln!("{line}");
    } else {
        eprintln!("{message}");
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
///
/// `base_currency` names the currency of money columns in `table` headers when the result has
/// no `base_currency` column of its own to say it.
pub async fn print(
    frame: DataFrame,
    format: Format,
    max_rows: MaxRows,
    base_currency: &str,
) -> anyhow::Result<u64> {
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
            let table = table(&stream.schema(), &kept, base_currency)?;
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
        Format::Markdown => {
            let schema = stream.schema();
            let names: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| markdown_cell(f.name()))
                .collect();
            writeln!(out, "| {} |", names.join(" | "))?;
            let rule: Vec<&str> = schema
                .fields()
                .iter()
                .map(|f| {
                    if f.data_type().is_numeric() {
                        "---:"
                    } else {
                        "---"
                    }
                })
                .collect();
            writeln!(out, "|{}|", rule.join("|"))?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                let columns = formatters(&batch)?;
                for row in 0..batch.num_rows() {
                    let cells: Vec<String> = columns
                        .iter()
                        .map(|c| markdown_cell(&c.value(row).to_string()))
                        .collect();
                    writeln!(out, "| {} |", cells.join(" | "))?;
                }
            }
        }
    }
    out.flush()?;
    Ok(rows)
}

/// How values are shown in `table` and `markdown` output (as arrow's pretty printer does:
/// exact decimals, NULL as an empty cell).
fn formatters(batch: &RecordBatch) -> anyhow::Result<Vec<ArrayFormatter<'_>>> {
    let options = FormatOptions::default().with_display_error(true);
    Ok(batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<_, _>>()?)
}

/// A value as one Markdown table cell: `|` would end the cell and a line break the row.
fn markdown_cell(text: &str) -> String {
    visible(
        &text
            .replace('\\', "\\\\")
            .replace('|', "\\|")
            .replace("\r\n", "<br>")
            .replace(['\n', '\r'], "<br>"),
    )
    .into_owned()
}

/// `text` with every control character but line feed and tab shown as `\xNN` (or `\u{NN}`
/// beyond ASCII): a value from a hostile CSV holding ESC, BEL or CR would otherwise drive the
/// analyst's terminal (recolour it, rewrite what is on screen, set its title).
fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\t' => shown.push(c),
            c if c.is_control() && (c as u32) < 0x80 => {
                shown.push_str(&format!("\\x{:02X}", c as u32))
            }
            c if c.is_control() => shown.push_str(&format!("\\u{{{:X}}}", c as u32)),
            c => shown.push(c),
        }
    }
    std::borrow::Cow::Owned(shown)
}

/// Whether a column holds money in the base currency: a decimal named after the converted
/// columns of `processed` (`*_sgd_amt`, or `*_eur_amt` when written with
/// `--columns-follow-base` and base EUR) or after the reports' totals (`deposits_sgd`).
fn is_money(field: &Field, base_currency: &str) -> bool {
    if !matches!(
        field.data_type(),
        DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    ) {
        return false;
    }
    let name = field.name().to_ascii_lowercase();
    let follows_base = format!("_{}_amt", base_currency.to_ascii_lowercase());
    name.ends_with("_sgd_amt") || name.ends_with(&follows_base) || name.ends_with("_sgd")
}

/// The currency money columns are in: the result's own `base_currency` column when the rows
/// shown hold one value, else `fallback` (`--base-currency`).
fn shown_currency(schema: &Schema, batches: &[RecordBatch], fallback: &str) -> String {
    let Ok(index) = schema.index_of("base_currency") else {
        return fallback.to_string();
    };
    let mut seen: Option<String> = None;
    for batch in batches {
        let Ok(values) = arrow::compute::cast(batch.column(index), &DataType::Utf8) else {
            return fallback.to_string();
        };
        let Some(values) = values.as_any().downcast_ref::<arrow::array::StringArray>() else {
            return fallback.to_string();
        };
        for value in values.iter().flatten() {
            match &seen {
                None => seen = Some(value.to_string()),
                Some(one) if one == value => {}
                // Rows in several base currencies: each row's own column says which.
                Some(_) => return "base_currency".to_string(),
            }
        }
    }
    seen.unwrap_or_else(|| fallback.to_string())
}

/// The `table` format: arrow's layout, numbers aligned right, money headers with their currency.
fn table(schema: &Schema, batches: &[RecordBatch], base_currency: &str) -> anyhow::Result<Table> {
    let mut table = Table::new();
    // arrow's pretty-printer preset, so the layout is the one users know.
    table.load_preset("||--+-++|    ++++++");
    let currency = shown_currency(schema, batches, base_currency);
    let header: Vec<Cell> = schema
        .fields()
        .iter()
        .map(|f| {
            if is_money(f, base_currency) {
                Cell::new(format!("{} ({currency})", f.name()))
            } else {
                Cell::new(f.name())
            }
        })
        .collect();
    table.set_header(header);
    for batch in batches {
        let columns = formatters(batch)?;
        for row in 0..batch.num_rows() {
            table.add_row(
                columns
                    .iter()
                    .map(|c| Cell::new(visible(&c.value(row).to_string())))
                    .collect::<Vec<_>>(),
            );
        }
    }
    for (index, field) in schema.fields().iter().enumerate() {
        if field.data_type().is_numeric() {
            if let Some(column) = table.column_mut(index) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    Ok(table)
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

    #[test]
    fn control_characters_are_shown_not_sent_to_the_terminal() {
        assert_eq!(visible("plain\ttext\nline"), "plain\ttext\nline");
        assert_eq!(
            visible("\u{1b}[2J\u{7}x\ry\u{9b}"),
            "\\x1B[2J\\x07x\\x0Dy\\u{9B}"
        );
        assert_eq!(markdown_cell("a\u{1b}]0;title\u{7}"), "a\\x1B]0;title\\x07");
    }

    #[test]
    fn markdown_cells_escape_pipes_and_line_breaks() {
        assert_eq!(markdown_cell("a|b"), "a\\|b");
        assert_eq!(markdown_cell("one\ntwo\r\nthree"), "one<br>two<br>three");
        assert_eq!(markdown_cell("c:\\x|"), "c:\\\\x\\|");
    }

    #[test]
    fn money_columns_are_decimals_named_after_converted_amounts_or_report_totals() {
        let decimal = |name: &str| Field::new(name, DataType::Decimal128(38, 2), true);
        assert!(is_money(&decimal("deposit_sgd_amt"), "EUR"));
        assert!(is_money(&decimal("withdrawal_eur_amt"), "EUR"));
        assert!(is_money(&decimal("net_sgd"), "SGD"));
        assert!(!is_money(&decimal("withdrawal_eur_amt"), "SGD"));
        assert!(!is_money(&decimal("deposit_amt"), "SGD"));
        assert!(!is_money(
            &Field::new("deposit_sgd_amt", DataType::Utf8, true),
            "SGD"
        ));
    }
}
