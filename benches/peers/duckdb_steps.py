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
    typed      untimed preparation of the like-for-like peer: one Parquet file each of the
               rows of fxpipe's own `transactions` and `rates` tables (their live files, read
               through the Delta log), with their column types. So both sides start from the
               same typed rows: the same CSV, parsed once, with the same rows rejected.
    normalize-typed
               the like-for-like peer of `fxpipe normalize`: from those typed files, an
               `ASOF LEFT JOIN` per side finds the latest rate on or before the value date, used
               only when it is at most --max-rate-age days old (fxpipe's rule); the amount is
               converted as amount x base_per_usd / currency_per_usd, rounded to the cent (DuckDB
               divides decimals in DOUBLE), stored as DECIMAL(38,2) beside the rate dates used,
               and written as Snappy Parquet partitioned by the transaction's year and month:
               the same columns fxpipe's `processed` table has. --no-insertion-order runs it
               with `preserve_insertion_order = false`, DuckDB's advice for partitioned writes.
    normalize  the older, looser peer (kept as a second row): from the copy step's Parquet, parse
               the bank's dates and amounts (auto-detection leaves them as text), join the rates
               of the exact value date, convert in DOUBLE arithmetic rounded to the cent, and
               write Parquet partitioned by year and month.
    compare    untimed: fxpipe's `processed` table against a normalize-typed output, month by
               month: row counts, converted-amount counts and sums. Exits 1 on a disagreement.

This is what a careful hand-written DuckDB job would do; it keeps no rejects, lineage of its
own or table versions. Each step prints one JSON line (what it did) on stdout, with `seconds`:
the step's own time inside this process, without Python's start-up and `import duckdb`.
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


def live_files(table):
    """The Parquet files of a Delta table's current version, from its log (not a folder glob,
    which would also see the files earlier versions removed)."""
    from deltalake import DeltaTable

    return DeltaTable(table).file_uris()


def parquet_list(files):
    return "[" + ", ".join(sql_string(f) for f in files) + "]"


def typed(con, args):
    """fxpipe's typed transactions and rates, each copied into one Parquet file."""
    transactions = live_files(f"{args.lake}/banktxn/parquet")
    rates = live_files(f"{args.lake}/api_response/response")
    (rows,) = con.execute(
        f"""
        COPY (SELECT * FROM read_parquet({parquet_list(transactions)}))
        TO {sql_string(args.out_transactions)} (FORMAT parquet)
        """
    ).fetchone()
    (rate_rows,) = con.execute(
        f"""
        COPY (SELECT run_date, target_currency, rates_base_usd
              FROM read_parquet({parquet_list(rates)}))
        TO {sql_string(args.out_rates)} (FORMAT parquet)
        """
    ).fetchone()
    types = column_types(con, args.out_transactions)
    return {"rows": rows, "rate_rows": rate_rows, "types": types}


def normalize_typed(con, args):
    """The like-for-like normalize: typed rows x ASOF rates -> DECIMAL amounts by year and month."""
    if args.no_insertion_order:
        con.execute("SET preserve_insertion_order = false")
    transactions = sql_string(args.transactions)
    rates = sql_string(args.rates)

    def converted(side):
        amount, currency, rate = f"t.{side}_amt", f"t.{side}_currency", side[0]
        return f"""
            CASE WHEN {currency} = $base THEN CAST({amount} AS DECIMAL(38, 2))
                 WHEN t.value_date - {rate}.run_date <= $age
                 THEN CAST(round({amount} * {rate}.base_per_usd / {rate}.currency_per_usd, 2)
                           AS DECIMAL(38, 2))
            END AS {side}_sgd_amt"""

    def rate_date(side):
        amount, currency, rate = f"t.{side}_amt", f"t.{side}_currency", side[0]
        return f"""
            CASE WHEN {amount} IS NULL THEN NULL
                 WHEN {currency} = $base THEN t.value_date
                 WHEN t.value_date - {rate}.run_date <= $age THEN {rate}.run_date
            END AS {side}_rate_date"""

    (rows,) = con.execute(
        f"""
        COPY (
            WITH base AS (
                SELECT run_date, rates_base_usd AS base_per_usd
                FROM read_parquet({rates}) WHERE target_currency = $base
            ),
            pairs AS (
                -- Both rates of a cross rate come from the same day, as in fxpipe.
                SELECT r.target_currency AS currency, r.run_date,
                       r.rates_base_usd AS currency_per_usd, base.base_per_usd
                FROM read_parquet({rates}) r JOIN base USING (run_date)
            )
            SELECT t.account_no, t.date, t.transaction_details, t.chq_no, t.value_date,
                   t.withdrawal_amt, t.withdrawal_currency, t.deposit_amt, t.deposit_currency,
                   t.balance_amt,
                   {converted('withdrawal')},
                   {converted('deposit')},
                   {rate_date('withdrawal')},
                   {rate_date('deposit')},
                   $base AS base_currency,
                   t.source_file, t.source_line,
                   year(t.date) AS year, month(t.date) AS month
            FROM read_parquet({transactions}) t
            ASOF LEFT JOIN pairs w
                   ON w.currency = t.withdrawal_currency AND t.value_date >= w.run_date
            ASOF LEFT JOIN pairs d
                   ON d.currency = t.deposit_currency AND t.value_date >= d.run_date
        ) TO {sql_string(args.out)}
          (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (year, month), OVERWRITE)
        """,
        {"base": args.base, "age": args.max_rate_age},
    ).fetchone()
    return {"rows": rows, "preserve_insertion_order": not args.no_insertion_order}


def compare(con, args):
    """Month by month, fxpipe's processed table against the peer's output. Row counts and the
    counts of converted amounts must be equal; sums may differ by DOUBLE's rounding, at most
    one cent per converted amount (a tie rounded the other way)."""
    processed = parquet_list(live_files(f"{args.lake}/banktxn/processed"))
    peer = sql_string(f"{args.peer}/**/*.parquet")

    def per_month(source):
        return f"""
            SELECT year(date) AS year, month(date) AS month, count(*) AS rows,
                   count(withdrawal_sgd_amt) + count(deposit_sgd_amt) AS converted,
                   coalesce(sum(withdrawal_sgd_amt), 0) + coalesce(sum(deposit_sgd_amt), 0)
                       AS total
            FROM read_parquet({source}, hive_partitioning = false)
            GROUP BY ALL"""

    months = con.execute(
        f"""
        SELECT coalesce(f.year, p.year) AS year, coalesce(f.month, p.month) AS month,
               f.rows, p.rows, f.converted, p.converted, f.total, p.total
        FROM ({per_month(processed)}) f FULL JOIN ({per_month(peer)}) p USING (year, month)
        ORDER BY 1, 2
        """
    ).fetchall()
    disagreements = []
    worst_cents = 0.0
    for year, month, f_rows, p_rows, f_conv, p_conv, f_total, p_total in months:
        label = f"{year}-{month:02}"
        if f_rows != p_rows or f_conv != p_conv:
            disagreements.append(
                f"{label}: rows {f_rows} vs {p_rows}, converted amounts {f_conv} vs {p_conv}"
            )
            continue
        cents = abs(float(f_total) - float(p_total)) * 100
        worst_cents = max(worst_cents, cents)
        if cents > f_conv + 0.5:
            disagreements.append(
                f"{label}: sums {f_total} vs {p_total} ({cents:.0f} cents over {f_conv} amounts)"
            )
    report = {
        "months": len(months),
        "rows": sum(m[2] or 0 for m in months),
        "largest_sum_difference_cents": round(worst_cents, 2),
        "agree": not disagreements,
        "disagreements": disagreements[:20],
    }
    if disagreements:
        print(json.dumps(report))
        sys.exit(1)
    return report


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    rates = steps.add_parser("rates", help="OXR JSON files -> rates Parquet (untimed)")
    rates.add_argument("--rates-dir", required=True, help="folder holding historical/*.json")
    rates.add_argument("--out", required=True)
    copy_step = steps.add_parser("copy", help="CSV -> Parquet (peer of fxpipe load)")
    copy_step.add_argument("--csv", required=True)
    copy_step.add_argument("--out", required=True)
    for name, summary, source in [
        ("normalize", "Parquet x rates -> partitioned Parquet (looser)", "copy"),
        ("normalize-typed", "the like-for-like normalize", "typed"),
    ]:
        norm = steps.add_parser(name, help=summary)
        norm.add_argument("--transactions", required=True, help=f"the {source} step's transactions")
        norm.add_argument("--rates", required=True, help=f"the {source} step's rates")
        norm.add_argument("--out", required=True, help="output folder (replaced)")
        norm.add_argument("--base", default="SGD", help="base currency (default SGD)")
    like = norm
    prep = steps.add_parser("typed", help="fxpipe's typed tables -> two Parquet files (untimed)")
    prep.add_argument("--lake", required=True, help="an fxpipe lake after ingest and load")
    prep.add_argument("--out-transactions", required=True)
    prep.add_argument("--out-rates", required=True)
    like.add_argument("--max-rate-age", type=int, default=3, help="days (fxpipe's default 3)")
    like.add_argument("--no-insertion-order", action="store_true",
                      help="SET preserve_insertion_order = false first")
    check = steps.add_parser("compare", help="fxpipe's processed table vs a peer output")
    check.add_argument("--lake", required=True)
    check.add_argument("--peer", required=True, help="a normalize-typed output folder")
    steps.add_parser("version", help="print DuckDB's version")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    con = duckdb.connect()
    started = time.monotonic()
    if args.step == "version":
        report = {}
    else:
        step = {
            "rates": prepare_rates,
            "copy": copy,
            "typed": typed,
            "normalize-typed": normalize_typed,
            "normalize": normalize,
            "compare": compare,
        }[args.step]
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
