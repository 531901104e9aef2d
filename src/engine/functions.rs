//! SQL functions fxpipe adds to DataFusion.
//!
//! They live in the library (not the CLI) because every process that runs our plans needs them:
//! the embedded engine, and every Ballista scheduler and executor (`engine/node.rs` registers them).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Decimal128Type, Float64Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::money::{self, MONEY_SCALE, PRECISION};

/// `fx_convert(amount, to_per_usd, from_per_usd [, source_file [, source_line]])`:
/// `amount × to_per_usd / from_per_usd` as `Decimal(38,2)`, exact and rounded half away from
/// zero. NULL in, NULL out; a non-positive rate or an overflow is an error (never a silent NULL)
/// that names the row's file and line when they are given (they are used for nothing else).
///
/// Integers are read as decimals with scale 0. Floats (`fx_convert(100, 1.35, 63)` when the
/// session parses literals as floats) are read through their shortest decimal text, `1.35`, so
/// no binary float arithmetic ever touches the amount or the rates.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FxConvert {
    signature: Signature,
}

impl Default for FxConvert {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl FxConvert {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self::default())
    }
}

/// The numeric arguments: amount, to_per_usd, from_per_usd.
const NUMBERS: usize = 3;
const ARGUMENT_NAMES: [&str; 5] = [
    "amount",
    "to_per_usd",
    "from_per_usd",
    "source_file",
    "source_line",
];

/// What a numeric argument is coerced to before the function sees it.
fn numeric_argument(data_type: &DataType, position: usize) -> Result<DataType> {
    let name = ARGUMENT_NAMES[position];
    match data_type {
        DataType::Decimal128(_, _) | DataType::Null | DataType::Float64 => Ok(data_type.clone()),
        // Every 64-bit integer fits 20 digits.
        t if t.is_integer() => Ok(DataType::Decimal128(20, 0)),
        // Read through its shortest decimal text, like Float64.
        DataType::Float32 | DataType::Float16 => Ok(DataType::Float64),
        other => plan_err!("fx_convert argument {name} must be a DECIMAL or a number, got {other}"),
    }
}

impl ScalarUDFImpl for FxConvert {
    fn name(&self) -> &str {
        "fx_convert"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(NUMBERS..=ARGUMENT_NAMES.len()).contains(&arg_types.len()) {
            return plan_err!(
                "fx_convert takes 3 to 5 arguments (amount, to_per_usd, from_per_usd [, source_file [, source_line]]), got {}",
                arg_types.len()
            );
        }
        arg_types
            .iter()
            .enumerate()
            .map(|(position, data_type)| match position {
                0..NUMBERS => numeric_argument(data_type, position),
                3 => Ok(DataType::Utf8),
                _ => Ok(DataType::Int64),
            })
            .collect()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for (position, data_type) in arg_types.iter().take(NUMBERS).enumerate() {
            numeric_argument(data_type, position)?;
        }
        Ok(DataType::Decimal128(PRECISION, MONEY_SCALE))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        if arrays.len() < NUMBERS {
            return exec_err!("fx_convert takes at least 3 arguments");
        }
        let numbers = arrays[..NUMBERS]
            .iter()
            .map(Number::new)
            .collect::<Result<Vec<_>>>()?;
        let origin = Origin::new(&arrays[NUMBERS..], rows)?;
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            let (Some(amount), Some(to), Some(from)) = (
                numbers[0].value(i)?,
                numbers[1].value(i)?,
                numbers[2].value(i)?,
            ) else {
                out.push(None);
                continue;
            };
            match money::convert(amount, to, from) {
                Some(cents) => out.push(Some(cents)),
                None => {
                    return exec_err!(
                        "cannot convert {} at rates {} / {}{}: rate not positive or result too large for DECIMAL(38,2)",
                        money::format_scaled(amount.0, amount.1),
                        money::format_scaled(to.0, to.1),
                        money::format_scaled(from.0, from.1),
                        origin.describe(i)
                    )
                }
            }
        }
        let result = Decimal128Array::from(out).with_precision_and_scale(PRECISION, MONEY_SCALE)?;
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

/// One numeric argument, as exact (unscaled, scale) values.
enum Number {
    Decimal(Decimal128Array, i8),
    Float(arrow::array::Float64Array),
    Null,
}

impl Number {
    fn new(array: &ArrayRef) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Decimal128(_, scale) => {
                Self::Decimal(array.as_primitive::<Decimal128Type>().clone(), *scale)
            }
            DataType::Float64 => Self::Float(array.as_primitive::<Float64Type>().clone()),
            DataType::Null => Self::Null,
            other => return exec_err!("fx_convert cannot read a {other} argument"),
        })
    }

    fn value(&self, i: usize) -> Result<Option<(i128, i8)>> {
        match self {
            Self::Decimal(values, scale) => {
                Ok(values.is_valid(i).then(|| (values.value(i), *scale)))
            }
            Self::Float(values) if values.is_valid(i) => float_exactly(values.value(i)).map(Some),
            Self::Float(_) | Self::Null => Ok(None),
        }
    }
}

/// A float as the decimal its shortest round-trip text shows (`1.35`, not
/// 1.350000000000000088817841970012523…): what the user typed, without binary arithmetic.
fn float_exactly(value: f64) -> Result<(i128, i8)> {
    // Rust prints floats in plain notation (no exponent), with the fewest digits that round-trip.
    let text = format!("{value}");
    let scale = text
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    let parsed = i8::try_from(scale)
        .ok()
        .filter(|scale| *scale <= PRECISION as i8)
        .and_then(|scale| Some((money::parse_scaled(&text, scale).ok()?, scale)));
    match parsed {
        Some(exact) if value.is_finite() => Ok(exact),
        _ => exec_err!("fx_convert cannot read {text} as an exact decimal of at most 38 digits"),
    }
}

/// The optional source_file and source_line arguments, for error messages only.
struct Origin {
    files: Option<StringArray>,
    lines: Option<Int64Array>,
}

impl Origin {
    fn new(arrays: &[ArrayRef], rows: usize) -> Result<Self> {
        let cast = |array: Option<&ArrayRef>, to: &DataType| -> Result<Option<ArrayRef>> {
            Ok(match array {
                Some(a) => Some(arrow::compute::cast(a, to)?),
                None => None,
            })
        };
        let files = cast(arrays.first(), &DataType::Utf8)?;
        let lines = cast(arrays.get(1), &DataType::Int64)?;
        debug_assert!(files.as_ref().is_none_or(|f| f.len() == rows));
        Ok(Self {
            files: files.map(|f| f.as_string::<i32>().clone()),
            lines: lines.map(|l| l.as_primitive().clone()),
        })
    }

    /// ` (file.csv line 12)`, or nothing when the caller gave no origin.
    fn describe(&self, i: usize) -> String {
        let file = self
            .files
            .as_ref()
            .filter(|f| f.is_valid(i))
            .map(|f| f.value(i));
        let line = self
            .lines
            .as_ref()
            .filter(|l| l.is_valid(i))
            .map(|l| l.value(i));
        match (file, line) {
            (Some(file), Some(line)) => format!(" ({file} line {line})"),
            (Some(file), None) => format!(" ({file})"),
            (None, Some(line)) => format!(" (line {line})"),
            (None, None) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn one_value(ctx: &SessionContext, sql: &str) -> Result<String> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let formatted =
            arrow::util::pretty::pretty_format_columns("v", &[batches[0].column(0).clone()])?;
        let text = formatted.to_string();
        Ok(text
            .lines()
            .nth(3)
            .unwrap_or_default()
            .trim_matches(|c| c == '|' || c == ' ')
            .to_string())
    }

    fn plain_session() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.register_udf(FxConvert::udf());
        ctx
    }

    #[tokio::test]
    async fn plain_literals_are_read_exactly() -> Result<()> {
        // Float literals (the default parser): 1.35 is read as the decimal 1.35.
        let ctx = plain_session();
        let cases = [
            ("SELECT fx_convert(100, 1.35, 63)", "2.14"),
            // The binary double nearest 1.005 is 1.00499999999999989…, which would round to
            // 1.00; the decimal 1.005 rounds half away from zero to 1.01.
            ("SELECT fx_convert(1.005, 1, 1)", "1.01"),
            ("SELECT fx_convert(CAST(1.005 AS DOUBLE), 1, 1)", "1.01"),
            // Integers in every argument, and a NULL.
            ("SELECT fx_convert(7, 3, 2)", "10.50"),
            ("SELECT fx_convert(7, NULL, 2) IS NULL", "true"),
        ];
        for (sql, expected) in cases {
            assert_eq!(one_value(&ctx, sql).await?, expected, "{sql}");
        }
        let types = ctx
            .sql("SELECT arrow_typeof(fx_convert(100, 1.35, 63))")
            .await?
            .collect()
            .await?;
        assert_eq!(
            types[0].column(0).as_string::<i32>().value(0),
            "Decimal128(38, 2)"
        );
        Ok(())
    }

    #[tokio::test]
    async fn decimal_literals_too() -> Result<()> {
        let ctx = plain_session();
        ctx.sql("SET datafusion.sql_parser.parse_float_as_decimal = true")
            .await?
            .collect()
            .await?;
        for (sql, expected) in [
            ("SELECT fx_convert(100, 1.35, 63)", "2.14"),
            ("SELECT fx_convert(1.005, 1, 1)", "1.01"),
        ] {
            assert_eq!(one_value(&ctx, sql).await?, expected, "{sql}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn errors_name_the_row_when_told() -> Result<()> {
        let ctx = plain_session();
        let err = one_value(&ctx, "SELECT fx_convert(100, 0, 63, 'june.csv', 42)")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("(june.csv line 42)"), "{err}");
        assert!(err.contains("cannot convert 100 at rates 0 / 63"), "{err}");
        // An overflow: 10^33 × 10^19 / 1 does not fit DECIMAL(38,2).
        let err = one_value(
            &ctx,
            "SELECT fx_convert(CAST('1000000000000000000000000000000000' AS DECIMAL(38,4)), \
             CAST('10000000000000000000' AS DECIMAL(38,18)), 1, 'big.csv', 7)",
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("(big.csv line 7)"), "{err}");
        // Without an origin, the message still names the values.
        let err = one_value(&ctx, "SELECT fx_convert(1, 1, -1)")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot convert 1 at rates 1 / -1:"), "{err}");
        let err = one_value(&ctx, "SELECT fx_convert(1, 1)")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 to 5 arguments"), "{err}");
        let err = one_value(&ctx, "SELECT fx_convert('1', 1, 1)")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a DECIMAL or a number"), "{err}");
        Ok(())
    }

    #[test]
    fn floats_are_read_through_their_shortest_text() {
        assert_eq!(float_exactly(1.35).ok(), Some((135, 2)));
        assert_eq!(float_exactly(63.0).ok(), Some((63, 0)));
        assert_eq!(float_exactly(0.000016386633).ok(), Some((16_386_633, 12)));
        assert_eq!(float_exactly(-2.5).ok(), Some((-25, 1)));
        assert!(float_exactly(f64::NAN).is_err());
        assert!(float_exactly(f64::INFINITY).is_err());
        assert!(float_exactly(1e300).is_err());
    }
}
