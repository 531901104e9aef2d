//! Real and hostile exports: Excel quirks are accepted, unreadable files fail with the file
//! named, and nothing is lost either way.

mod common;

use common::Lake;

fn load(lake: &Lake, name: &str, bytes: &[u8]) -> std::process::Output {
    let path = lake.file(name);
    std::fs::write(&path, bytes).unwrap();
    lake.try_run(&["load", path.to_str().unwrap()])
}

#[test]
fn excel_exports_load() {
    let lake = Lake::new();
    // BOM, CRLF, padded header names, an extra "." column, ';' delimiter, ragged rows.
    let csv = "\u{feff} Account No ; DATE ;TRANSACTION DETAILS;CHQ.NO.;VALUE DATE; WITHDRAWAL AMT ;withdrawal currency; DEPOSIT AMT ;deposit currency;BALANCE AMT;.\r\n\
               409000611074';29-Jun-17;TRF  FROM;;29-Jun-17;\"  1,200,000.00 \"; inr ;;;  56.18 ;.\r\n\
               409000611074';5-Jul-17;CASH;;5-Jul-17;;;10,00,000.00;usd\r\n\
               409000611074';6-Jul-17;SHORT ROW;;6-Jul-17;;;5;EUR;\r\n";
    // This `;` export writes point decimals (the Indian bank's own convention), so it says so:
    // `auto` would read comma decimals in a `;` file.
    let path = lake.file("excel.csv");
    std::fs::write(&path, csv).unwrap();
    lake.run(&["load", "--decimal-separator", ".", path.to_str().unwrap()]);
    let rows = lake.query("SELECT account_no, withdrawal_amt, withdrawal_currency, deposit_amt, deposit_currency, balance_amt FROM transactions ORDER BY source_line");
    assert_eq!(
        rows[0],
        ["409000611074", "1200000.0000", "INR", "", "", "56.1800"]
    );
    assert_eq!(rows[1], ["409000611074", "", "", "1000000.0000", "USD", ""]);
    assert_eq!(rows.len(), 3);
    assert_eq!(lake.scalar("SELECT count(*) FROM rejects"), "0");

    // Left on auto, its point-decimal amounts are refused, never misread.
    let auto = Lake::new();
    let output = load(&auto, "excel.csv", csv.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        auto.query("SELECT account_no, deposit_amt FROM transactions"),
        [["409000611074", "5.0000"]]
    );
    assert_eq!(
        auto.query("SELECT source_line, field, reason FROM rejects ORDER BY source_line"),
        [
            ["2", "withdrawal_amt", "bad_amount"],
            ["3", "deposit_amt", "bad_amount"],
        ]
    );
}

#[test]
fn unreadable_files_fail_naming_the_file_and_change_nothing() {
    let lake = Lake::new();
    let empty = load(&lake, "empty.csv", b"");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty.csv"));

    let wrong = load(&lake, "wrong.csv", b"id,amount\n1,2\n");
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("wrong.csv") && stderr.contains("account_no"),
        "{stderr}"
    );

    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(!load(&lake, "binary.csv", &binary).status.success());
    assert!(
        !lake.path().join("banktxn/parquet/_delta_log").exists(),
        "nothing was committed"
    );
}

/// `rejected_by_reason` of the latest load report, as (code, count) pairs.
fn rejected_by_reason(lake: &Lake) -> Vec<(String, u64)> {
    let report = lake.latest_report("load");
    report["rejected_by_reason"]
        .as_object()
        .expect("rejected_by_reason")
        .iter()
        .map(|(code, n)| (code.clone(), n.as_u64().expect("a count")))
        .collect()
}

fn counts(lake: &Lake) -> (u64, u64, u64) {
    let report = lake.latest_report("load");
    let field = |name: &str| report[name].as_u64().expect("a count");
    (
        field("rows_read"),
        field("rows_loaded"),
        field("rows_rejected"),
    )
}

fn pairs(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut pairs: Vec<(String, u64)> = expected
        .iter()
        .map(|(code, n)| (code.to_string(), *n))
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn every_line_is_accounted_for() {
    let lake = Lake::new();
    let mut csv = String::from("account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n");
    let bad_cells = [
        "",
        "x",
        "1.2.3",
        "-1",
        // An unterminated quote in the middle of the file: each of its 4 rows is rejected on
        // its own (the last one's quote is never closed), and the rows after it still load.
        "\"unterminated",
        "1e5",
        // Quoted, or the comma would split the cell in two.
        "\"1,00\"",
        "\"12,50\"",
        "(5)",
        "99999999999999999999999999999999999999",
        "1000000000000000000",
        "0.00001",
    ];
    let mut n = 0;
    for (i, amount) in bad_cells.iter().enumerate() {
        for currency in ["", "INR", "in r", "ZZZ"] {
            csv.push_str(&format!(
                "A{i},29-Jun-17,row,,29-Jun-17,{amount},{currency},,,\n"
            ));
            n += 1;
        }
    }
    csv.push_str("GOOD,29-Jun-17,row,,29-Jun-17,5.00,INR,,,\n");
    n += 1;
    let output = load(&lake, "hostile.csv", csv.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(counts(&lake), (n, 1, n - 1));
    assert_eq!(
        rejected_by_reason(&lake),
        pairs(&[
            // The blank amount: no amount at all, a currency without an amount (INR, ZZZ),
            // a bad currency ("in r" is checked before the pair).
            ("no_amount", 1),
            ("currency_without_amount", 2),
            ("bad_currency", 1),
            // x, 1.2.3, 1e5, 1,00, 12,50, 38 nines, 10^18, 0.00001: the amount is checked
            // before its currency.
            ("bad_amount", 8 * 4),
            // -1, (5)
            ("negative_amount", 2 * 4),
            ("unterminated_quote", 4),
        ])
    );
    assert_eq!(lake.count("transactions"), 1);
    assert_eq!(lake.count("rejects"), n - 1);
    assert_eq!(
        lake.query("SELECT account_no, withdrawal_amt, source_line FROM transactions"),
        [["GOOD", "5.0000", &(n + 1).to_string()]]
    );
    // Every line of the file is one row, in transactions or in rejects, at its own line.
    assert_eq!(
        lake.scalar(
            "SELECT count(DISTINCT source_line) FROM (SELECT source_line FROM transactions \
             UNION ALL SELECT source_line FROM rejects)"
        ),
        n.to_string()
    );
}

#[test]
fn runaway_records_lose_one_line_each_and_the_rest_loads() {
    let lake = Lake::new();
    let good = |line: usize| format!("G{line},29-Jun-17,row,,29-Jun-17,5.00,INR,,,\n");
    let mut csv = String::from("account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n");
    csv.push_str(&good(2));
    // Line 3: 2 MiB on one line, past the 1 MiB record limit.
    csv.push_str(&format!(
        "L3,29-Jun-17,{},,29-Jun-17,5.00,INR,,,\n",
        "x".repeat(2 << 20)
    ));
    csv.push_str(&good(4));
    // Line 5: a quote that runs over more than 100 lines before a later quote closes it.
    csv.push_str("Q5,29-Jun-17,\"runaway,,29-Jun-17,5.00,INR,,,\n");
    for line in 6..=156 {
        csv.push_str(&good(line));
    }
    // Line 157: a quote never closed, 3 rows before the end of the file.
    csv.push_str("T157,29-Jun-17,\"tail,,29-Jun-17,5.00,INR,,,\n");
    for line in 158..=160 {
        csv.push_str(&good(line));
    }
    let output = load(&lake, "runaway.csv", csv.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(counts(&lake), (159, 156, 3));
    assert_eq!(
        rejected_by_reason(&lake),
        pairs(&[("record_too_long", 2), ("unterminated_quote", 1)])
    );
    let rejects = lake.query(
        "SELECT source_line, reason, field IS NULL, detail, length(raw) FROM rejects \
         ORDER BY source_line",
    );
    let lines: Vec<&str> = rejects.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(lines, ["3", "5", "157"]);
    assert_eq!(rejects[0][1], "record_too_long");
    assert_eq!(rejects[1][1], "record_too_long");
    assert_eq!(rejects[2][1], "unterminated_quote");
    assert!(rejects.iter().all(|r| r[2] == "true"), "{rejects:?}");
    // The detail names the first and last line; the raw text is capped.
    assert!(rejects[0][3].contains("line 3"), "{}", rejects[0][3]);
    assert!(rejects[1][3].contains("line 5") && rejects[1][3].contains("line 105"));
    assert!(rejects[2][3].contains("line 157") && rejects[2][3].contains("line 160"));
    let raw_len: usize = rejects[0][4].parse().unwrap();
    assert!((4096..4096 + 100).contains(&raw_len), "{raw_len}");
    assert_eq!(
        lake.scalar("SELECT min(source_line) || '-' || max(source_line) FROM transactions"),
        "2-160"
    );
    assert_eq!(
        lake.scalar("SELECT count(*) FROM transactions WHERE account_no LIKE 'G%'"),
        "156"
    );
}

#[test]
fn absurd_amounts_are_rejected_at_the_row() {
    let lake = Lake::new();
    let csv = "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n\
               A,29-Jun-17,largest,,29-Jun-17,\"999,999,999,999,999,999.9999\",USD,,,\n\
               B,29-Jun-17,too large,,29-Jun-17,1000000000000000000,USD,,,\n\
               C,29-Jun-17,balance,,29-Jun-17,1.00,USD,,,-100000000000000000000\n";
    let output = load(&lake, "absurd.csv", csv.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(counts(&lake), (3, 1, 2));
    assert_eq!(
        lake.query("SELECT account_no, withdrawal_amt FROM transactions"),
        [["A", "999999999999999999.9999"]]
    );
    let rejects =
        lake.query("SELECT source_line, field, reason, detail FROM rejects ORDER BY source_line");
    assert_eq!(rejects.len(), 2);
    assert_eq!(rejects[0][..3], ["3", "withdrawal_amt", "bad_amount"]);
    assert_eq!(rejects[1][..3], ["4", "balance_amt", "bad_amount"]);
    assert!(
        rejects.iter().all(|r| r[3].contains("too large")),
        "{rejects:?}"
    );
}

#[test]
fn european_exports_read_comma_decimals() {
    let lake = Lake::new();
    // `;`-delimited: auto reads comma decimals, `.` groups thousands.
    let csv = "account_no;date;transaction_details;chq_no;value_date;withdrawal_amt;withdrawal_currency;deposit_amt;deposit_currency;balance_amt\n\
               E2;29-Jun-17;grouped;;29-Jun-17;1.234,56;EUR;;;\n\
               E3;29-Jun-17;cents;;29-Jun-17;12,50;EUR;;;\n\
               E4;29-Jun-17;millions;;29-Jun-17;;;1.000.000;EUR;(7,5)\n\
               E5;29-Jun-17;a lone group;;29-Jun-17;1.234;EUR;;;\n\
               E6;29-Jun-17;ambiguous;;29-Jun-17;1.23;EUR;;;\n\
               E7;29-Jun-17;two commas;;29-Jun-17;1,234,56;EUR;;;\n\
               E8;29-Jun-17;point decimals;;29-Jun-17;1,234.56;EUR;;;\n";
    let path = lake.file("eu.csv");
    std::fs::write(&path, csv).unwrap();
    lake.run(&["load", path.to_str().unwrap()]);
    assert_eq!(counts(&lake), (7, 3, 4));
    assert_eq!(
        lake.query(
            "SELECT account_no, withdrawal_amt, deposit_amt, balance_amt FROM transactions \
             ORDER BY source_line"
        ),
        [
            ["E2", "1234.5600", "", ""],
            ["E3", "12.5000", "", ""],
            ["E4", "", "1000000.0000", "-7.5000"],
        ]
    );
    // `auto` only guessed comma decimals: `1.234` (1234, or 1.234 of a 3-decimal currency?)
    // is refused as ambiguous, never guessed.
    assert_eq!(
        lake.query("SELECT source_line, field, reason FROM rejects ORDER BY source_line"),
        [
            ["5", "withdrawal_amt", "bad_amount"],
            ["6", "withdrawal_amt", "bad_amount"],
            ["7", "withdrawal_amt", "bad_amount"],
            ["8", "withdrawal_amt", "bad_amount"],
        ]
    );
    assert!(lake
        .scalar("SELECT detail FROM rejects WHERE source_line = 5")
        .contains("ambiguous"));

    // Comma decimals said explicitly: a lone group is thousands, `1.234` is 1234.
    let comma = Lake::new();
    let path = comma.file("eu.csv");
    std::fs::write(&path, csv).unwrap();
    comma.run(&["load", "--decimal-separator", ",", path.to_str().unwrap()]);
    assert_eq!(counts(&comma), (7, 4, 3));
    assert_eq!(
        comma.scalar("SELECT withdrawal_amt FROM transactions WHERE account_no = 'E5'"),
        "1234.0000"
    );

    // The same amounts with point decimals forced: `12,50` is refused, never read as 1250,
    // and `1.234` is one point two three four.
    let forced = Lake::new();
    let path = forced.file("eu.csv");
    std::fs::write(&path, csv).unwrap();
    forced.run(&["load", "--decimal-separator", ".", path.to_str().unwrap()]);
    assert_eq!(
        forced.query("SELECT account_no, withdrawal_amt FROM transactions ORDER BY source_line"),
        [["E5", "1.2340"], ["E6", "1.2300"], ["E8", "1234.5600"]]
    );
    assert_eq!(
        forced.scalar("SELECT count(*) FROM rejects WHERE reason = 'bad_amount'"),
        "4"
    );

    // A comma-delimited file reads point decimals unless told otherwise (then its comma
    // amounts must be quoted); the environment variable works like the flag.
    let csv = "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n\
               C2,29-Jun-17,x,,29-Jun-17,\"1.234,56\",EUR,,,\n\
               C3,29-Jun-17,x,,29-Jun-17,\"12,50\",EUR,,,\n";
    let point = Lake::new();
    let path = point.file("c.csv");
    std::fs::write(&path, csv).unwrap();
    point.run(&["load", path.to_str().unwrap()]);
    assert_eq!(counts(&point), (2, 0, 2));
    let comma = Lake::new();
    let loaded = comma
        .command(&["load", path.to_str().unwrap()])
        .env("FXPIPE_DECIMAL_SEPARATOR", ",")
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(
        comma.query("SELECT withdrawal_amt FROM transactions ORDER BY source_line"),
        [["1234.5600"], ["12.5000"]]
    );
}

#[test]
fn queries_on_a_missing_lake_fail_instead_of_creating_it() {
    let lake = Lake::new();
    let output = lake.try_run(&["sql", "SELECT 1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no lake at"), "{stderr}");
    assert!(!lake.path().exists());
}
