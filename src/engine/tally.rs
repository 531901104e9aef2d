//! Counts of the rows a write task wrote, so the client can reconcile a distributed write
//! before it commits: rows out must equal rows in, and `--strict` must see no unconverted
//! amount. Each task counts its own rows; the client merges the tallies.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::array_value_to_string;
use datafusion::common::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

/// What one or more write tasks wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub rows: u64,
    /// Withdrawal, deposit: amounts, converted, converted with an earlier day's rate.
    /// Counted only for normalize's output (see [`Tally::add`]).
    pub sides: [[u64; 3]; 2],
    /// Amounts with no usable rate, by currency code (`?` for a missing code).
    pub unconverted: BTreeMap<String, u64>,
    /// Rows per Hive partition (`year=2017/month=6`).
    pub partitions: BTreeMap<String, u64>,
    /// Partitions a task wrote through a local spill file, beyond its open-file bound
    /// (counted once per task; see [`super::partition_files`]).
    #[serde(default)]
    pub spilled_partitions: u64,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Internal(format!("the written rows have no column {name}")))
}

impl Tally {
    /// Counts `batch`. With `converted_suffix` (normalize's `sgd`), also counts each side's
    /// amounts, those converted (`<side>_<suffix>_amt` not null) and those converted with an
    /// earlier day's rate (`<side>_rate_date` before `value_date`).
    pub fn add(
        &mut self,
        batch: &RecordBatch,
        partition_columns: &[String],
        converted_suffix: Option<&str>,
    ) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        self.rows += rows as u64;
        if let Some(suffix) = converted_suffix {
            self.add_conversions(batch, suffix)?;
        }
        let keys = partition_columns
            .iter()
            .map(|name| column(batch, name).cloned())
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            *self.partitions.entry(String::new()).or_default() += rows as u64;
            return Ok(());
        }
        // One key per run of equal partition values (rows of a partition mostly come
        // together); only each run's first value is formatted.
        let runs = arrow::compute::partition(&keys)?;
        for range in runs.ranges() {
            let key = partition_columns
                .iter()
                .zip(&keys)
                .map(|(name, values)| {
                    let value = if values.is_null(range.start) {
                        "__HIVE_DEFAULT_PARTITION__".to_string()
                    } else {
                        array_value_to_string(values, range.start)?
                    };
                    Ok(format!("{name}={value}"))
                })
                .collect::<Result<Vec<_>>>()?
                .join("/");
            *self.partitions.entry(key).or_default() += range.len() as u64;
        }
        Ok(())
    }

    fn add_conversions(&mut self, batch: &RecordBatch, suffix: &str) -> Result<()> {
        let rows = batch.num_rows();
        let value_date = column(batch, "value_date")?;
        for (side, counts) in ["withdrawal", "deposit"]
            .into_iter()
            .zip(self.sides.iter_mut())
        {
            let amount = column(batch, &format!("{side}_amt"))?;
            let converted = column(batch, &format!("{side}_{suffix}_amt"))?;
            let rate_date = column(batch, &format!("{side}_rate_date"))?;
            counts[0] += (rows - amount.null_count()) as u64;
            counts[1] += (rows - converted.null_count()) as u64;
            counts[2] +=
                arrow::compute::kernels::cmp::lt(rate_date, value_date)?.true_count() as u64;
            if amount.null_count() < converted.null_count() {
                let currency = arrow::compute::cast(
                    column(batch, &format!("{side}_currency"))?,
                    &DataType::Utf8,
                )?;
                let currency = currency.as_string::<i32>();
                for row in (0..rows).filter(|r| amount.is_valid(*r) && converted.is_null(*r)) {
                    let code = if currency.is_null(row) {
                        "?"
                    } else {
                        currency.value(row)
                    };
                    *self.unconverted.entry(code.to_string()).or_default() += 1;
                }
            }
        }
        Ok(())
    }

    /// Adds another task's counts.
    pub fn merge(&mut self, other: &Tally) {
        self.rows += other.rows;
        for (mine, theirs) in self.sides.iter_mut().zip(&other.sides) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        for (code, n) in &other.unconverted {
            *self.unconverted.entry(code.clone()).or_default() += n;
        }
        for (key, n) in &other.partitions {
            *self.partitions.entry(key.clone()).or_default() += n;
        }
        self.spilled_partitions += other.spilled_partitions;
    }

    pub fn unconverted_total(&self) -> u64 {
        self.unconverted.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn partitions_are_counted_by_run_and_tallies_merge() -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("year", DataType::Int32, false),
            Field::new("month", DataType::Int32, true),
            Field::new("x", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![2017, 2017, 2017, 2018, 2017])),
                Arc::new(Int32Array::from(vec![
                    Some(6),
                    Some(6),
                    Some(7),
                    None,
                    Some(6),
                ])),
                Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"])),
            ],
        )?;
        let columns = ["year".to_string(), "month".to_string()];
        let mut one = Tally::default();
        one.add(&batch, &columns, None)?;
        let mut two = one.clone();
        two.merge(&one);
        assert_eq!(two.rows, 10);
        let counted: Vec<_> = two
            .partitions
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        assert_eq!(
            counted,
            [
                ("year=2017/month=6", 6),
                ("year=2017/month=7", 2),
                ("year=2018/month=__HIVE_DEFAULT_PARTITION__", 2)
            ]
        );
        // A normalize tally needs its columns: a missing one is an error, not a zero.
        assert!(one.add(&batch, &columns, Some("sgd")).is_err());
        Ok(())
    }
}
