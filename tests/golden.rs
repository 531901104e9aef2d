//! The money rule on a hand-computed golden set, rejects of each kind, the as-of fallback and
//! the job reports' reconciliation.

mod common;

use common::{golden_lake, ingest_golden_rates, Lake};

#[test]
fn golden_set_converts_to_the_cent() {
    let lake = golden_lake();
    let rows = lake.query(
        "SELECT transaction_details, withdrawal_sgd_amt, deposit_sgd_amt, \
         withdrawal_rate_date, deposit_rate_date FROM processed ORDER BY source_line",
    );
    let expected: &[(&str, &str, &str, &str, &str)] = &[
        // 100 × 1.35 / 63 = 2.142857… (the original produced 4666.67 in float32)
        (
            "TRF FROM  Indiaforensic SERVICES",
            "2.14",
            "",
            "2017-06-29",
            "",
        ),
        // 1234.567 × 1.35 / 0.3075 = 5420.0502…
        ("KWD deposit", "", "5420.05", "", "2017-06-29"),
        // 10000 × 1.35 / 110 = 122.7272…
        ("JPY payment", "122.73", "", "2017-06-29", ""),
        // 0.5 × 1.35 / 0.000016386633 = 41192.1108…
        ("BTC deposit", "", "41192.11", "", "2017-06-29"),
        // already SGD: 2.145 rounds half away from zero
        ("SGD deposit", "", "2.15", "", "2017-06-29"),
        // no rates on 06-30: the 06-29 rates, 250.50 × 1.35 / 63 = 5.3678…
        ("INR as-of the day before", "5.37", "", "2017-06-29", ""),
        // 07-10: nearest rates 07-01 (9 days back) — beyond the default 3 days
        ("INR with no rate near", "", "", "", ""),
        // 1,000,000 × 1.36 / 1
        ("USD wire", "1360000.00", "", "2017-07-01", ""),
        // 10,00,000.00 × 1.36 / 64
        ("INR Indian grouping", "", "21250.00", "", "2017-07-01"),
    ];
    assert_eq!(rows.len(), expected.len(), "{rows:?}");
    for (row, want) in rows.iter().zip(expected) {
        let got = (
            row[0].as_str(),
            row[1].as_str(),
            row[2].as_str(),
            row[3].as_str(),
            row[4].as_str(),
        );
        assert_eq!(got, *want);
    }
    // Amounts are exact decimals in the table itself, not floats.
    let types = lake.query("SELECT arrow_typeof(withdrawal_sgd_amt), arrow_typeof(withdrawal_amt) FROM processed LIMIT 1");
    assert_eq!(types[0], vec!["Decimal128(38, 2)", "Decimal128(38, 4)"]);
}

#[test]
fn reports_reconcile_and_count_unconverted() {
    let lake = golden_lake();
    let load = lake.latest_report("load");
    assert_eq!(load["rows_read"], 18);
    assert_eq!(load["rows_loaded"], 9);
    assert_eq!(load["rows_rejected"], 9);
    let normalize = lake.latest_report("normalize");
    assert_eq!(normalize["rows_in"], 9);
    assert_eq!(normalize["rows_written"], 9);
    // Counted from the Delta log's file statistics (fxpipe's loads write them), not a scan; a
    // month rewrite counts its months with a scan.
    let counted = "transactions counted from the Delta log's statistics";
    let output = lake.command(&["-v", "normalize"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.contains(counted),
        "{stderr}"
    );
    assert_eq!(lake.latest_report("normalize")["rows_in"], 9);
    let output = lake
        .command(&["-v", "normalize", "--from", "2017-06", "--to", "2017-07"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains(counted),
        "{stderr}"
    );
    assert_eq!(lake.latest_report("normalize")["rows_in"], 9);
    assert_eq!(normalize["unconverted"], 1);
    assert_eq!(normalize["unconverted_by_currency"]["INR"], 1);
    assert_eq!(normalize["converted_with_earlier_rate"], 1);
    assert_eq!(
        normalize["partitions_written"],
        serde_json::json!(["year=2017/month=6", "year=2017/month=7"])
    );
    let ingest = lake.latest_report("ingest");
    assert_eq!(ingest["dates_requested"], 4);
    assert_eq!(ingest["dates_ingested"], 2);
    // 06-30 has no file (404), 07-02 is the API's 429 error body.
    let errors = lake.query("SELECT CAST(run_date AS VARCHAR) AS day, status, message FROM rates_errors ORDER BY run_date");
    assert_eq!(
        errors,
        vec![
            vec!["2017-06-30".to_string(), "404".into(), "not_found".into()],
            vec![
                "2017-07-02".to_string(),
                "429".into(),
                "access_restricted".into()
            ],
        ]
    );
    // Hive layout on disk, as Athena expects it.
    assert!(lake
        .path()
        .join("banktxn/processed/year=2017/month=6")
        .is_dir());
    assert!(lake.path().join("banktxn/processed/_delta_log").is_dir());
}

#[test]
fn every_kind_of_reject_names_line_field_and_reason() {
    let lake = golden_lake();
    let rows = lake.query(
        "SELECT source_line, reason, coalesce(field, '-') FROM rejects ORDER BY source_line",
    );
    let expected = [
        ("11", "bad_date", "date"),
        ("12", "bad_amount", "withdrawal_amt"),
        ("13", "amount_without_currency", "withdrawal_currency"),
        ("14", "currency_without_amount", "withdrawal_amt"),
        ("15", "no_amount", "-"),
        ("16", "bad_currency", "withdrawal_currency"),
        ("17", "malformed_row", "-"),
        ("18", "missing_account", "account_no"),
        ("19", "negative_amount", "withdrawal_amt"),
    ];
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(got, expected);
    let raw = lake.scalar("SELECT raw FROM rejects WHERE reason = 'bad_amount'");
    assert!(raw.contains("12.3.4"), "{raw}");
}

#[test]
fn strict_fails_and_keeps_the_previous_output() {
    let lake = golden_lake();
    let before = lake.scalar("SELECT count(*) FROM processed");
    let commits = lake.commits("banktxn/processed");
    let mut files = lake.list("banktxn/processed");
    files.sort();
    let output = lake.try_run(&["normalize", "--strict"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("INR: 1"), "{stderr}");
    assert_eq!(lake.scalar("SELECT count(*) FROM processed"), before);
    assert_eq!(lake.commits("banktxn/processed"), commits);
    // The files the write tasks wrote before the check were deleted, not left behind for
    // plain-Parquet readers (Athena's Hive tables, Spark's parquet reader) to see.
    let mut after = lake.list("banktxn/processed");
    after.sort();
    assert_eq!(after, files);
    // A longer allowed age converts the 07-10 amount with the 07-01 rates: 99.99 × 1.36 / 64.
    lake.run(&["normalize", "--strict", "--max-rate-age", "9"]);
    assert_eq!(lake.scalar("SELECT withdrawal_sgd_amt FROM processed WHERE transaction_details = 'INR with no rate near'"), "2.12");
}

#[test]
fn analytics_reports_run_on_the_golden_set() {
    let lake = golden_lake();
    let out = lake.run(&["report", "creditworthiness", "--format", "csv"]);
    // 409000493210: deposits 41192.11 + 2.15, withdrawals 5.37 → High
    assert!(out.contains("SGD,409000493210,5.37,41194.26,"), "{out}");
    assert!(out.contains("High Creditworthiness"), "{out}");
    let by_currency = lake.run(&["report", "deposits-by-currency", "--format", "csv"]);
    assert!(
        by_currency.contains("SGD,BTC,1,0.5000,41192.11,0"),
        "{by_currency}"
    );
    // Every report says which currency its amounts are in, first.
    for name in ["account-summary", "currency-exposure", "monthly-flows"] {
        let out = lake.run(&["report", name, "--format", "csv"]);
        let mut lines = out.lines();
        assert!(lines.next().unwrap().starts_with("base_currency,"), "{out}");
        assert!(lines.all(|l| l.starts_with("SGD,")), "{out}");
    }
    let table = lake.run(&["report", "monthly-flows"]);
    assert!(table.contains("base_currency"), "{table}");
}

#[test]
fn any_base_currency_with_its_own_column_names() {
    let lake = golden_lake();
    lake.run(&[
        "--base-currency",
        "eur",
        "normalize",
        "--columns-follow-base",
    ]);
    let rows = lake.query(
        "SELECT transaction_details, withdrawal_eur_amt, deposit_eur_amt, \
         CAST(coalesce(withdrawal_rate_date, deposit_rate_date) AS VARCHAR) AS rate_date \
         FROM processed ORDER BY source_line",
    );
    let find = |details: &str| {
        rows.iter()
            .find(|r| r[0] == details)
            .unwrap_or_else(|| panic!("{details}: {rows:?}"))
    };
    // 100 × 0.876 / 63 = 1.3904…
    assert_eq!(
        find("TRF FROM  Indiaforensic SERVICES")[1..],
        ["1.39", "", "2017-06-29"]
    );
    // SGD is now a foreign currency: 2.145 × 0.876 / 1.35 = 1.3918…
    assert_eq!(find("SGD deposit")[1..], ["", "1.39", "2017-06-29"]);
    // 07-01 has no EUR rate: both rates of the pair come from 06-29, 1,000,000 × 0.876 / 1.
    assert_eq!(find("USD wire")[1..], ["876000.00", "", "2017-06-29"]);
    // Reports read the renamed columns.
    let out = lake.run(&["report", "account-summary", "--format", "csv"]);
    assert!(out.contains("EUR,409000493210,4,3.48,"), "{out}");
    assert_eq!(
        lake.scalar("SELECT count(*) FROM rates_errors WHERE message = 'base_currency_missing'"),
        "0",
        "ingest ran with base SGD"
    );
}

/// A lake with the golden rates and one CSV of the test's own.
fn lake_with(name: &str, csv: &str) -> Lake {
    let lake = Lake::new();
    ingest_golden_rates(&lake, "2017-07-01");
    let file = lake.file(name);
    std::fs::write(&file, csv).unwrap();
    lake.run(&["load", file.to_str().unwrap()]);
    lake
}

const HEADER: &str = "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n";

#[test]
fn creditworthiness_bands_are_exact_to_the_cent() {
    // (account, withdrawals, deposits, band): exactly 1.5× and 1.0× with cents, one cent either
    // side, deposits only, and no activity.
    let accounts = [
        ("1001", "3.30", "4.95", "Moderate Creditworthiness"),
        ("1002", "3.30", "4.96", "High Creditworthiness"),
        ("1003", "3.30", "4.94", "Moderate Creditworthiness"),
        ("1004", "7.77", "7.77", "Moderate Creditworthiness"),
        ("1005", "7.77", "7.78", "Moderate Creditworthiness"),
        ("1006", "7.77", "7.76", "Low Creditworthiness"),
        ("1007", "0.00", "0.01", "High Creditworthiness"),
        ("1008", "0.00", "0.00", "No Activity"),
    ];
    let mut csv = HEADER.to_string();
    for (account, withdrawn, deposited, _) in accounts {
        csv += &format!("{account},29-Jun-17,out,,29-Jun-17,{withdrawn},SGD,,,\n");
        csv += &format!("{account},29-Jun-17,in,,29-Jun-17,,,{deposited},SGD,\n");
    }
    let lake = lake_with("bands.csv", &csv);
    lake.run(&["normalize"]);
    let out = lake.run(&["report", "creditworthiness", "--format", "csv"]);
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(out.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), accounts.len(), "{out}");
    for (row, (account, withdrawn, deposited, band)) in rows.iter().zip(accounts) {
        assert_eq!(row[..4], ["SGD", account, withdrawn, deposited], "{out}");
        assert_eq!(row[5], band, "account {account}: {out}");
    }
    // The ratio is an exact decimal too: 4.95 / 3.30 = 1.5, 7.76 / 7.77 = 0.99871… → 0.9987.
    assert_eq!(rows[0][4], "1.5000", "{out}");
    assert_eq!(rows[5][4], "0.9987", "{out}");
    assert_eq!(rows[6][4], "", "deposits only: unbounded ratio");
}

#[test]
fn ad_hoc_sql_literals_are_exact_decimals() {
    let lake = golden_lake();
    let row = &lake.query(
        "SELECT arrow_typeof(1.5), 0.1 + 0.2 = 0.3, CAST(3.30 AS DECIMAL(38, 2)) * 1.5, \
         fx_convert(100, 1.35, 63)",
    )[0];
    assert_eq!(row, &["Decimal128(2, 1)", "true", "4.950", "2.14"]);
}

#[test]
fn a_month_rewrite_in_another_base_currency_is_refused() {
    let lake = golden_lake();
    assert_eq!(
        lake.scalar("SELECT string_agg(DISTINCT base_currency, ',') FROM processed"),
        "SGD"
    );
    let commits = lake.commits("banktxn/processed");
    let before = lake.query("SELECT * FROM processed ORDER BY source_line");
    let june_in_eur = [
        "--base-currency",
        "EUR",
        "normalize",
        "--from",
        "2017-06",
        "--to",
        "2017-06",
    ];
    let output = lake.try_run(&june_in_eur);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the processed table is in SGD, not EUR"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fxpipe --base-currency EUR normalize` (without --from/--to)"),
        "{stderr}"
    );
    assert_eq!(lake.commits("banktxn/processed"), commits);
    assert_eq!(
        lake.query("SELECT * FROM processed ORDER BY source_line"),
        before
    );
    // The whole table converts; then month rewrites in EUR are fine.
    lake.run(&["--base-currency", "EUR", "normalize"]);
    lake.run(&june_in_eur);
    assert_eq!(
        lake.scalar("SELECT string_agg(DISTINCT base_currency, ',') FROM processed"),
        "EUR"
    );
    // 100 × 0.876 / 63 = 1.3904…
    assert_eq!(
        lake.scalar("SELECT withdrawal_sgd_amt FROM processed WHERE transaction_details = 'TRF FROM  Indiaforensic SERVICES'"),
        "1.39"
    );
    // And back in SGD by month is refused the same way.
    let output = lake.try_run(&["normalize", "--from", "2017-07", "--to", "2017-07"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the processed table is in EUR, not SGD"),
        "{stderr}"
    );
}

#[test]
fn max_rate_age_is_0_to_366_days() {
    let lake = golden_lake();
    for age in ["367", "99999999999", "-1"] {
        let output = lake.try_run(&["normalize", &format!("--max-rate-age={age}")]);
        assert!(
            !output.status.success(),
            "--max-rate-age {age} was accepted"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--max-rate-age"), "{stderr}");
    }
    let stderr =
        String::from_utf8_lossy(&lake.try_run(&["normalize", "--max-rate-age", "367"]).stderr)
            .to_string();
    assert!(stderr.contains("367 is not in 0..=366"), "{stderr}");
    // The whole range works: a year back still takes the latest earlier rate, never a later one.
    lake.run(&["normalize", "--max-rate-age", "366"]);
    let rows = lake.query(
        "SELECT transaction_details, withdrawal_sgd_amt, CAST(withdrawal_rate_date AS VARCHAR) \
         FROM processed WHERE withdrawal_currency = 'INR' ORDER BY source_line",
    );
    assert_eq!(
        rows,
        [
            ["TRF FROM  Indiaforensic SERVICES", "2.14", "2017-06-29"],
            ["INR as-of the day before", "5.37", "2017-06-29"],
            ["INR with no rate near", "2.12", "2017-07-01"],
        ]
    );
    lake.run(&["normalize", "--max-rate-age", "0"]);
    assert_eq!(
        lake.scalar("SELECT count(*) FROM processed WHERE withdrawal_currency = 'INR' AND withdrawal_sgd_amt IS NULL"),
        "2"
    );
}

#[test]
fn an_overflow_names_the_file_and_line() {
    // Amounts of 10^18 or more are rejected at load, so an overflow needs an absurd rate: just
    // under 10^18 units of XTS (ISO's test code) at 10^-18 XTS per USD is ~1.35 × 10^36 SGD,
    // beyond DECIMAL(38,2).
    let lake = Lake::new();
    let rates = lake.file("rates/historical");
    std::fs::create_dir_all(&rates).unwrap();
    std::fs::write(
        rates.join("2017-06-29.json"),
        r#"{"base": "USD", "timestamp": 1498780799, "rates": {"USD": 1, "SGD": 1.35, "XTS": 0.000000000000000001}}"#,
    )
    .unwrap();
    let source = format!("file://{}", lake.file("rates").display());
    lake.run(&["ingest", "--source", &source, "--date", "2017-06-29"]);
    let csv = format!(
        "{HEADER}1001,29-Jun-17,fine,,29-Jun-17,1,SGD,,,\n1001,29-Jun-17,huge,,29-Jun-17,{},XTS,,,\n",
        "9".repeat(18)
    );
    let file = lake.file("huge.csv");
    std::fs::write(&file, csv).unwrap();
    lake.run(&["load", file.to_str().unwrap()]);
    assert_eq!(
        lake.count("transactions"),
        2,
        "both amounts are below the load's bound"
    );
    let output = lake.try_run(&["normalize"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/huge.csv line 3)"), "{stderr}");
    assert!(stderr.contains("result too large"), "{stderr}");
}

#[test]
fn rate_dates_are_the_latest_usable_day_by_an_independent_check() {
    // The golden rates have gaps (06-30 missing, 07-02 an error body) and 07-01 has no EUR rate:
    // the checker recomputes which day each amount must use, in both bases.
    let lake = golden_lake();
    let path = lake.path();
    common::python("check_lake.py", &[path.to_str().unwrap(), "SGD", "3"]);
    // (vacuum: the checker also reads the Parquet folders, which keep replaced files until then)
    lake.run(&["normalize", "--max-rate-age", "9"]);
    lake.run(&["vacuum", "--retention-hours", "0", "--force"]);
    common::python("check_lake.py", &[path.to_str().unwrap(), "SGD", "9"]);
    lake.run(&["--base-currency", "EUR", "normalize"]);
    lake.run(&["vacuum", "--retention-hours", "0", "--force"]);
    common::python("check_lake.py", &[path.to_str().unwrap(), "EUR", "3"]);
}

#[test]
fn two_rates_for_one_day_are_refused_not_picked() {
    let lake = golden_lake();
    // Another writer appends a second, different INR rate for 2017-06-29.
    let rates = lake.path().join("api_response/response");
    let script = "import sys, pyarrow.compute as pc\n\
from deltalake import DeltaTable, write_deltalake\n\
t = DeltaTable(sys.argv[1]).to_pyarrow_table().sort_by('run_date')\n\
row = t.filter(pc.equal(t['target_currency'], 'INR')).slice(0, 1)\n\
rate = pc.multiply(row['rates_base_usd'].cast('float64'), 2).cast(row.schema.field('rates_base_usd').type)\n\
row = row.set_column(row.schema.get_field_index('rates_base_usd'), 'rates_base_usd', rate)\n\
write_deltalake(sys.argv[1], row, mode='append')\n";
    let output = std::process::Command::new("python3")
        .args(["-c", script, rates.to_str().unwrap()])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let before = lake.commits("banktxn/processed");
    let failed = lake.try_run(&["normalize"]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("2017-06-29 INR"), "{stderr}");
    assert_eq!(lake.commits("banktxn/processed"), before);
}

/// `--max-open-files 1`: each write task keeps one month's file open and writes the other
/// months through local spill files (issue 26's memory bound). The rows are those of a normalize
/// with every month open, each month still gets at most one file per task, and the report says
/// how many months waited.
#[test]
fn months_beyond_the_open_file_bound_are_written_the_same() {
    const ALL_ROWS: &str = "SELECT * FROM processed ORDER BY source_file, source_line";
    let lake = golden_lake();
    let all_open = lake.run(&["sql", ALL_ROWS, "--format", "csv"]);
    let report = lake.latest_report("normalize");
    assert_eq!(report["partitions_spilled"], 0, "{report}");

    lake.run(&["normalize", "--max-open-files", "1"]);
    let report = lake.latest_report("normalize");
    assert_eq!(lake.run(&["sql", ALL_ROWS, "--format", "csv"]), all_open);
    let months = report["partitions_written"].as_array().unwrap().len() as u64;
    assert_eq!(months, 2, "{report}");
    let tasks = report["write_tasks"].as_u64().unwrap();
    let spilled = report["partitions_spilled"].as_u64().unwrap();
    assert!(spilled >= 1 && spilled <= tasks * (months - 1), "{report}");
    assert!(
        report["files_written"].as_u64().unwrap() <= months * tasks,
        "{report}"
    );
}
