"""Checks a normalized lake with engines other than fxpipe's.

- deltalake (delta-rs for Python) opens every table through its log;
- DuckDB reads the processed Parquet files with Hive partitioning, as Athena would;
- every converted amount equals amount × rate_usd[base] / rate_usd[currency] evaluated with
  exact fractions and rounded half away from zero to the cent.
"""
import os
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import duckdb
from deltalake import DeltaTable

lake = Path(sys.argv[1])
base = "SGD"

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


def cents(value: Fraction) -> Decimal:
    scaled = value * 100
    whole = abs(scaled.numerator) * 2 + abs(scaled.denominator)
    rounded = whole // (2 * abs(scaled.denominator))  # floor(|x| + 1/2)
    if scaled < 0:
        rounded = -rounded
    return Decimal(rounded) / 100


checked = 0
for row in processed:
    for side in ("withdrawal", "deposit"):
        amount, currency = row[f"{side}_amt"], row[f"{side}_currency"]
        got, rate_date = row[f"{side}_sgd_amt"], row[f"{side}_rate_date"]
        if amount is None:
            assert got is None and rate_date is None, row
            continue
        if currency == base:
            expected = cents(Fraction(amount))
        elif got is None:
            assert rate_date is None, row
            assert not any(
                (d, currency) in rates and (row["value_date"] - d).days <= 3 and d <= row["value_date"]
                for d in {k[0] for k in rates}
            ), f"a usable rate existed but the amount is NULL: {row}"
            continue
        else:
            assert 0 <= (row["value_date"] - rate_date).days <= 3, row
            expected = cents(Fraction(amount) * rates[(rate_date, base)] / rates[(rate_date, currency)])
        assert got == expected, f"{side}: got {got}, exact {expected}: {row}"
        checked += 1
assert checked > 0
print(f"ok: {len(processed)} rows, {checked} amounts exact to the cent, DuckDB sees {hive[1]} partitions")
# Skip interpreter teardown: deltalake's runtime threads sometimes abort there ("terminate
# called without an active exception") after every check has passed.
sys.stdout.flush()
os._exit(0)
