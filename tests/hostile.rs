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
    let output = load(&lake, "excel.csv", csv.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = lake.query("SELECT account_no, withdrawal_amt, withdrawal_currency, deposit_amt, deposit_currency, balance_amt FROM transactions ORDER BY source_line");
    assert_eq!(
        rows[0],
        ["409000611074", "1200000.0000", "INR", "", "", "56.1800"]
    );
    assert_eq!(rows[1], ["409000611074", "", "", "1000000.0000", "USD", ""]);
    assert_eq!(rows.len(), 3);
    assert_eq!(lake.scalar("SELECT count(*) FROM rejects"), "0");
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

#[test]
fn every_line_is_accounted_for() {
    let lake = Lake::new();
    let mut csv = String::from("account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n");
    let bad_cells = [
        "",
        "x",
        "1.2.3",
        "-1",
        "1e5",
        "1,00",
        "(5)",
        "99999999999999999999999999999999999999",
        "0.00001",
        "\"unterminated",
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
    let output = load(&lake, "hostile.csv", csv.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = lake.latest_report("load");
    let read = report["rows_read"].as_u64().unwrap();
    let loaded = report["rows_loaded"].as_u64().unwrap();
    let rejected = report["rows_rejected"].as_u64().unwrap();
    assert_eq!(read, loaded + rejected);
    // The unterminated quote swallows the rest of the file into one record: every row before
    // it is accounted for.
    assert!(read >= (n - 3) as u64, "{report}");
    let in_tables = lake.count("transactions") + lake.count("rejects");
    assert_eq!(in_tables, read);
    // Only well-formed amounts with a valid currency were loaded.
    assert_eq!(
        lake.scalar("SELECT count(*) FROM transactions WHERE withdrawal_amt IS NULL"),
        "0"
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
