//! The money rule on a hand-computed golden set, rejects of each kind, the as-of fallback and
//! the job reports' reconciliation.

mod common;

use common::{golden_dir, Lake};

fn golden_lake() -> Lake {
    let lake = Lake::new();
    let rates = format!("file://{}", golden_dir().join("rates").display());
    lake.run(&[
        "ingest",
        "--source",
        &rates,
        "--from",
        "2017-06-29",
        "--to",
        "2017-07-02",
    ]);
    let csv = golden_dir().join("transactions.csv");
    lake.run(&["load", csv.to_str().unwrap()]);
    lake.run(&["normalize"]);
    lake
}

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
    let output = lake.try_run(&["normalize", "--strict"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("INR: 1"), "{stderr}");
    assert_eq!(lake.scalar("SELECT count(*) FROM processed"), before);
    assert_eq!(lake.commits("banktxn/processed"), commits);
    // A longer allowed age converts the 07-10 amount with the 07-01 rates: 99.99 × 1.36 / 64.
    lake.run(&["normalize", "--strict", "--max-rate-age", "9"]);
    assert_eq!(lake.scalar("SELECT withdrawal_sgd_amt FROM processed WHERE transaction_details = 'INR with no rate near'"), "2.12");
}

#[test]
fn analytics_reports_run_on_the_golden_set() {
    let lake = golden_lake();
    let out = lake.run(&["report", "creditworthiness", "--format", "csv"]);
    // 409000493210: deposits 41192.11 + 2.15, withdrawals 5.37 → High
    assert!(out.contains("409000493210,5.37,41194.26,"), "{out}");
    assert!(out.contains("High Creditworthiness"), "{out}");
    let by_currency = lake.run(&["report", "deposits-by-currency", "--format", "csv"]);
    assert!(
        by_currency.contains("BTC,1,0.5000,41192.11,0"),
        "{by_currency}"
    );
    for name in ["account-summary", "currency-exposure", "monthly-flows"] {
        lake.run(&["report", name]);
    }
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
    assert!(out.contains("409000493210,4,3.48,"), "{out}");
    assert_eq!(
        lake.scalar("SELECT count(*) FROM rates_errors WHERE message = 'base_currency_missing'"),
        "0",
        "ingest ran with base SGD"
    );
}
