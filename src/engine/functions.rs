//! SQL functions fxpipe adds to DataFusion.
//!
//! They live in the library (not the CLI) because every process that runs our plans needs them:
//! the embedded engine now, Ballista's scheduler and executors later.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use arrow::datatypes::{DataType, Decimal128Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::money::{self, MONEY_SCALE, PRECISION};

/// `fx_convert(amount, to_per_usd, from_per_usd)`: `amount × to_per_usd / from_per_usd` as
/// `Decimal(38,2)`, exact and rounded half away from zero. NULL in, NULL out; a non-positive
/// rate or an overflow is an error (never a silent NULL).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FxConvert {
    signature: Signature,
}

impl Default for FxConvert {
    fn default() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl FxConvert {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self::default())
    }
}

fn decimal_scale(data_type: &DataType, position: usize) -> Result<i8> {
    match data_type {
        DataType::Decimal128(_, scale) => Ok(*scale),
        DataType::Null => Ok(0),
        other => plan_err!("fx_convert argument {position} must be DECIMAL, got {other}"),
    }
}

impl ScalarUDFImpl for FxConvert {
    fn name(&self) -> &str {
        "fx_convert"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for (position, data_type) in arg_types.iter().enumerate() {
            decimal_scale(data_type, position + 1)?;
        }
        Ok(DataType::Decimal128(PRECISION, MONEY_SCALE))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut decimals = Vec::with_capacity(3);
        for (position, array) in arrays.iter().enumerate() {
            let scale = decimal_scale(array.data_type(), position + 1)?;
            let values: ArrayRef = if array.data_type() == &DataType::Null {
                Arc::new(Decimal128Array::new_null(rows))
            } else {
                array.clone()
            };
            decimals.push((values, scale));
        }
        let [(amounts, sa), (to_rates, st), (from_rates, sf)] = &decimals[..] else {
            return exec_err!("fx_convert takes 3 arguments");
        };
        let amounts = amounts.as_primitive::<Decimal128Type>();
        let to_rates = to_rates.as_primitive::<Decimal128Type>();
        let from_rates = from_rates.as_primitive::<Decimal128Type>();
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            if amounts.is_null(i) || to_rates.is_null(i) || from_rates.is_null(i) {
                out.push(None);
                continue;
            }
            let converted = money::convert(
                (amounts.value(i), *sa),
                (to_rates.value(i), *st),
                (from_rates.value(i), *sf),
            );
            match converted {
                Some(cents) => out.push(Some(cents)),
                None => {
                    return exec_err!(
                        "cannot convert {} at rates {} / {}: rate not positive or result too large",
                        money::format_scaled(amounts.value(i), *sa),
                        money::format_scaled(to_rates.value(i), *st),
                        money::format_scaled(from_rates.value(i), *sf)
                    )
                }
            }
        }
        let result = Decimal128Array::from(out).with_precision_and_scale(PRECISION, MONEY_SCALE)?;
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}
