#!/usr/bin/env python3
"""DuckDB's side of the pipeline benchmark: the peer steps fxpipe is compared with.

`cargo bench --bench pipeline -- --peers` runs each timed step of this script as its own
process, measured exactly like the fxpipe steps (wall time and peak RSS from wait4), on the
same files:

    rates      OXR JSON files -> one Parquet of (rate_date, currency, units_per_usd).
               Untimed preparation, cached by the benchmark; DuckDB reads JSON, not a lake.
    copy       the peer of `fxpipe load`: a plain CSV -> Parquet copy with DuckDB's type
               auto-detection. Malformed rows are skipped (ignore_errors), not reported, and
               rows Excel cut short are padded (null_padding), as fxpipe accepts them.
    normalize  the peer of `fxpipe normalize`: from that Parquet, parse the bank's dates and
               amounts (auto-detection leaves them as text), join the rates of the value date
               for the withdrawal and the deposit currency, convert to the base currency in
               DOUBLE arithmetic rounded to the cent, and write Parquet partitioned by the
               transaction's year and month.

This is what a careful hand-written DuckDB job would do; it is not exact (floats) and keeps
no rejects, lineage or table versions. Each step prints one JSON line (what it did) on stdout.
"""

import argparse
import json
import sys
import time

import duckdb


def sql_string(text):
    """A SQL string literal: COPY ... TO and read_* take paths as literals, not parameters."""
    return "'" + text.replace("'", "''") + "'"


def prepare_rates(con, args):
    """Flattens DIR/historical/YYYY-MM-DD.json (base USD) into (rate_date, currency, units_per_usd).

    The date is the file's, as fxpipe's file:// rate source takes it.
    """
    pattern = sql_string(f"{args.rates_dir}/historical/*.json")
    con.execute(
        f"""
        COPY (
            SELECT CAST(regexp_extract(filename, '(\\d{{4}}-\\d{{2}}-\\d{{2}})\\.json$', 1) AS DATE)
                       AS rate_date,
                   rate.key AS currency,
                   rate.value AS units_per_usd
            FROM (
                SELECT filename, unnest(map_entries(rates)) AS rate
                FROM read_json({pattern},
                               columns = {{'base': 'VARCHAR', 'rates': 'MAP(VARCHAR, DOUBLE)'}},
                               filename = true)
                WHERE base = 'USD'
            )
        ) TO {sql_string(args.out)} (FORMAT parquet)
        """
    )
    rows, days, currencies = con.execute(
        f"SELECT count(*), count(DISTINCT rate_date), count(DISTINCT currency) "
        f"FROM read_parquet({sql_string(args.out)})"
    ).fetchone()
    return {"rate_rows": rows, "days": days, "currencies": currencies}


def copy(con, args):
    """CSV -> Parquet with auto-detected types, skipping rows that do not parse."""
    (rows,) = con.execute(
        f"""
        COPY (
            SELECT * FROM read_csv({sql_string(args.csv)}, ignore_errors = true,
                                   null_padding = true)
        ) TO {sql_string(args.out)} (FORMAT parquet)
        """
    ).fetchone()
    return {"rows": rows}


def column_types(con, parquet):
    """Column name -> DuckDB type, as the copy step's auto-detection left them."""
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_string(parquet)})")
    return {name: kind for name, kind, *_ in described.fetchall()}


def as_date(column, kind):
    """The bank's `29-Jun-17` or `2017-06-29 00:00:00`, whatever auto-detection made of it."""
    if kind != "VARCHAR":
        return f"CAST({column} AS DATE)"
    return (
        f"CAST(coalesce(try_strptime({column}, '%d-%b-%y'), "
        f"try_strptime({column}, '%Y-%m-%d %H:%M:%S')) AS DATE)"
    )


def as_amount(column, kind):
    """An amount with thousands separators (Western or Indian) and padding, as a DOUBLE."""
    if kind != "VARCHAR":
        return f"CAST({column} AS DOUBLE)"
    return f"try_cast(replace(trim({column}), ',', '') AS DOUBLE)"


def normalize(con, args):
    """Typed Parquet x rates of the value date -> base-currency amounts, by year and month."""
    types = column_types(con, args.transactions)
    rates = sql_string(args.rates)
    transactions = sql_string(args.transactions)
    (rows,) = con.execute(
        f"""
        COPY (
            WITH base AS (
                SELECT rate_date, units_per_usd AS base_per_usd
                FROM read_parquet({rates}) WHERE currency = $base
            ),
            to_base AS (
                -- One factor per day and currency: base units per unit of the currency.
                SELECT r.rate_date, r.currency, base.base_per_usd / r.units_per_usd AS factor
                FROM read_parquet({rates}) r JOIN base USING (rate_date)
            ),
            typed AS (
                SELECT * REPLACE (
                           {as_date('date', types['date'])} AS date,
                           {as_date('value_date', types['value_date'])} AS value_date,
                           {as_amount('withdrawal_amt', types['withdrawal_amt'])} AS withdrawal_amt,
                           {as_amount('deposit_amt', types['deposit_amt'])} AS deposit_amt)
                FROM read_parquet({transactions})
            )
            SELECT t.*,
                   round(t.withdrawal_amt * w.factor, 2) AS withdrawal_base_amt,
                   round(t.deposit_amt * d.factor, 2) AS deposit_base_amt,
                   $base AS base_currency,
                   year(t.date) AS year,
                   month(t.date) AS month
            FROM typed t
            LEFT JOIN to_base w
                   ON w.currency = t.withdrawal_currency AND w.rate_date = t.value_date
            LEFT JOIN to_base d
                   ON d.currency = t.deposit_currency AND d.rate_date = t.value_date
            -- A row without a date has no partition; fxpipe's load rejects it.
            WHERE t.date IS NOT NULL
        ) TO {sql_string(args.out)} (FORMAT parquet, PARTITION_BY (year, month), OVERWRITE)
        """,
        {"base": args.base},
    ).fetchone()
    return {"rows": rows}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    rates = steps.add_parser("rates", help="OXR JSON files -> rates Parquet (untimed)")
    rates.add_argument("--rates-dir", required=True, help="folder holding historical/*.json")
    rates.add_argument("--out", required=True)
    copy_step = steps.add_parser("copy", help="CSV -> Parquet (peer of fxpipe load)")
    copy_step.add_argument("--csv", required=True)
    copy_step.add_argument("--out", required=True)
    norm = steps.add_parser("normalize", help="Parquet x rates -> partitioned Parquet")
    norm.add_argument("--transactions", required=True, help="the copy step's Parquet")
    norm.add_argument("--rates", required=True, help="the rates step's Parquet")
    norm.add_argument("--out", required=True, help="output folder (replaced)")
    norm.add_argument("--base", default="SGD", help="base currency (default SGD)")
    steps.add_parser("version", help="print DuckDB's version")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    con = duckdb.connect()
    started = time.monotonic()
    if args.step == "version":
        report = {}
    else:
        step = {"rates": prepare_rates, "copy": copy, "normalize": normalize}[args.step]
        report = step(con, args)
    report.update(
        step=args.step,
        seconds=round(time.monotonic() - started, 3),
        duckdb=duckdb.__version__,
        threads=con.execute("SELECT current_setting('threads')").fetchone()[0],
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
