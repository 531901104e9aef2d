"""Checks a normalized lake with engines other than fxpipe's.

Usage: check_lake.py LAKE [BASE [MAX_RATE_AGE]]   (defaults: SGD, 3 days)

- deltalake (delta-rs for Python) opens every table through its log;
- DuckDB reads the processed Parquet files with Hive partitioning, as Athena would;
- every row says it is in BASE (the base_currency column);
- every converted amount used the LATEST day, not later than the value date and at most
  MAX_RATE_AGE days before it, that has both the currency's and the base's rate; an amount is
  NULL only when no such day exists;
- every converted amount equals amount × rate_usd[base] / rate_usd[currency] of that day,
  evaluated with exact fractions and rounded half away from zero to the cent.
"""
import os
import sys
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import duckdb
from deltalake import DeltaTable

lake = Path(sys.argv[1])
base = sys.argv[2] if len(sys.argv) > 2 else "SGD"
max_age = int(sys.argv[3]) if len(sys.argv) > 3 else 3

processed = DeltaTable(str(lake / "banktxn/processed")).to_pyarrow_table().to_pylist()
rates_rows = DeltaTable(str(lake / "api_response/response")).to_pyarrow_table().to_pylist()
transactions = DeltaTable(str(lake / "banktxn/parquet")).to_pyarrow_table().num_rows
assert len(processed) == transactions, (len(processed), transactions)

hive = duckdb.connect().execute(
    f"SELECT count(*), count(DISTINCT year || '-' || month) FROM read_parquet("
    f"'{lake}/banktxn/processed/year=*/month=*/*.parquet', hive_partitioning = true)"
).fetchall()[0]
assert hive[0] == len(processed), (hive, len(processed))

rates = {(r["run_date"], r["target_currency"]): Fraction(r["rates_base_usd"]) for r in rates_rows}


def usable_day(currency, value_date):
    """The latest day within the age with both rates of the pair, or None."""
    for back in range(max_age + 1):
        day = value_date - timedelta(days=back)
        if (day, currency) in rates and (day, base) in rates:
            return day
    return None


def cents(value: Fraction) -> Decimal:
    scaled = value * 100
    whole = abs(scaled.numerator) * 2 + abs(scaled.denominator)
    rounded = whole // (2 * abs(scaled.denominator))  # floor(|x| + 1/2)
    if scaled < 0:
        rounded = -rounded
    return Decimal(rounded) / 100


checked = earlier = 0
for row in processed:
    assert row["base_currency"] == base, row
    for side in ("withdrawal", "deposit"):
        amount, currency = row[f"{side}_amt"], row[f"{side}_currency"]
        got, rate_date = row[f"{side}_sgd_amt"], row[f"{side}_rate_date"]
        if amount is None:
            assert got is None and rate_date is None, row
            continue
        if currency == base:
            assert rate_date == row["value_date"], row
            expected = cents(Fraction(amount))
        else:
            want = usable_day(currency, row["value_date"])
            assert rate_date == want, f"{side}: rate date {rate_date}, latest usable {want}: {row}"
            if want is None:
                assert got is None, f"{side}: converted without a usable rate: {row}"
                continue
            assert (want, base) in rates, row
            earlier += want != row["value_date"]
            expected = cents(Fraction(amount) * rates[(want, base)] / rates[(want, currency)])
        assert got == expected, f"{side}: got {got}, exact {expected}: {row}"
        checked += 1
assert checked > 0
print(
    f"ok: {len(processed)} rows in {base}, {checked} amounts exact to the cent "
    f"({earlier} with an earlier day's rate, max age {max_age}), DuckDB sees {hive[1]} partitions"
)
# Skip interpreter teardown: deltalake's runtime threads sometimes abort there ("terminate
# called without an active exception") after every check has passed.
sys.stdout.flush()
os._exit(0)
