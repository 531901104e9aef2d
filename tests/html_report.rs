//! `fxpipe report balance-history` on the golden lake (exact values, the month-end conversion
//! and its "no rate" note) and `fxpipe report --html`: the page rendered in a real headless
//! Chromium (`tests/check_html_report.py`), which must load nothing but the file, draw every
//! chart with a size, show the numbers the reports print, and escape hostile data.
//!
//! The browser is the system's Chromium (`tests/run.sh` installs it). Where none can be
//! started the browser checks are skipped with a message, unless
//! `FXPIPE_TEST_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a failure.

mod common;

use std::collections::BTreeMap;

use common::cluster::Cluster;
use common::{golden_lake, Lake};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

const BALANCE_HISTORY: &str = "\
base_currency,account_no,year,month,transactions,net_sgd,running_balance_sgd,unconverted_to_date,balance_amt,balance_date
SGD,409000493210,2017,6,3,41188.89,41188.89,0,56.1800,2017-06-29
SGD,409000493210,2017,7,1,0.00,41188.89,1,,
SGD,409000611074,2017,6,3,5295.18,5295.18,0,1200000.0000,2017-06-29
SGD,409000611074,2017,7,2,-1338750.00,-1333454.82,0,,
";

#[test]
fn balance_history_on_the_golden_lake() {
    let lake = golden_lake();
    let out = lake.run(&["report", "balance-history", "--format", "csv"]);
    assert_eq!(out, BALANCE_HISTORY);
    // The running balance is the sum of monthly-flows' net, month after month.
    let flows = lake.run(&["report", "monthly-flows", "--format", "csv"]);
    assert!(
        flows.contains("SGD,409000611074,2017,7,2,21250.00,1360000.00,-1338750.00"),
        "{flows}"
    );

    // With the accounts' currency, the month-end balance converted at the month-end rate:
    // June ends on the 30th, which has no rates (the golden gap), so the 29th's are used.
    let out = lake.run(&[
        "report",
        "balance-history",
        "--account-currency",
        "inr",
        "--format",
        "csv",
    ]);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(
        rows[0],
        "base_currency,account_no,year,month,transactions,net_sgd,running_balance_sgd,unconverted_to_date,balance_amt,balance_date,account_currency,balance_sgd,balance_rate_date,note"
    );
    let sgd = rate(&lake, "SGD", "2017-06-29");
    let inr = rate(&lake, "INR", "2017-06-29");
    let expected_small = convert(561_800, 4, sgd, inr); // 56.1800 INR
    let expected_large = convert(12_000_000_000, 4, sgd, inr); // 1200000.0000 INR
    assert_eq!(expected_small, "1.20");
    assert_eq!(expected_large, "25714.29");
    assert_eq!(
        rows[1],
        format!("SGD,409000493210,2017,6,3,41188.89,41188.89,0,56.1800,2017-06-29,INR,{expected_small},2017-06-29,")
    );
    assert_eq!(
        rows[2],
        "SGD,409000493210,2017,7,1,0.00,41188.89,1,,,INR,,,no balance_amt in this month"
    );
    assert_eq!(
        rows[3],
        format!("SGD,409000611074,2017,6,3,5295.18,5295.18,0,1200000.0000,2017-06-29,INR,{expected_large},2017-06-29,")
    );
    assert_eq!(rows.len(), 5, "{out}");

    // --max-rate-age 0: the 30th itself has no rates, and the note says which days were tried.
    let out = lake.run(&[
        "report",
        "balance-history",
        "--account-currency",
        "INR",
        "--max-rate-age",
        "0",
        "--format",
        "csv",
    ]);
    assert!(
        out.contains("SGD,409000611074,2017,6,3,5295.18,5295.18,0,1200000.0000,2017-06-29,INR,,,no INR and SGD rates from 2017-06-30 to 2017-06-30\n"),
        "{out}"
    );

    // A balance stated in July, whose month end has no rate within 3 days: said, not NULL.
    let july = lake.file("july.csv");
    std::fs::write(
        &july,
        "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n\
         409000611074,1-Jul-17,late balance,,1-Jul-17,,,5,INR,\"1,500.00\"\n\
         409000611074,1-Jul-17,same day earlier line,,1-Jul-17,,,,,\n",
    )
    .unwrap();
    let _ = lake.try_run(&["load", july.to_str().unwrap()]);
    lake.run(&["normalize"]);
    let out = lake.run(&[
        "report",
        "balance-history",
        "--account-currency",
        "INR",
        "--format",
        "csv",
    ]);
    assert!(
        out.contains(
            ",1500.0000,2017-07-01,INR,,,no INR and SGD rates from 2017-07-28 to 2017-07-31\n"
        ),
        "{out}"
    );

    // The base currency itself needs no rate.
    let out = lake.run(&[
        "report",
        "balance-history",
        "--account-currency",
        "SGD",
        "--format",
        "csv",
    ]);
    assert!(
        out.contains(",1500.0000,2017-07-01,SGD,1500.00,2017-07-01,\n"),
        "{out}"
    );
}

#[test]
fn report_options_are_checked() {
    let lake = golden_lake();
    let output = lake.try_run(&["report", "creditworthiness", "--account-currency", "INR"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("--account-currency applies to balance-history only"),
        "{}",
        text(&output.stderr)
    );
    // --list needs no lake.
    let nowhere = Lake::new();
    let list = nowhere.run(&["report", "--list"]);
    let names: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "account-summary",
            "creditworthiness",
            "deposits-by-currency",
            "currency-exposure",
            "monthly-flows",
            "balance-history",
            "--html"
        ],
        "{list}"
    );
    let output = lake.try_run(&["report"]);
    assert_eq!(output.status.code(), Some(2), "a name, --list or --html");
}

/// A rate of the lake as an integer of 18 decimals.
fn rate(lake: &Lake, currency: &str, day: &str) -> i128 {
    let text = lake.scalar(&format!(
        "SELECT CAST(rates_base_usd AS VARCHAR) FROM rates \
         WHERE target_currency = '{currency}' AND run_date = DATE '{day}'"
    ));
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let fraction = format!("{fraction:0<18}");
    format!("{whole}{fraction}").parse().expect("a rate")
}

/// amount (an integer of `scale` decimals) × to / from, rounded half away from zero to the
/// cent, as text: the money rule computed independently of fxpipe.
fn convert(amount: i128, scale: u32, to: i128, from: i128) -> String {
    let numerator = amount * to * 100;
    let denominator = from * 10i128.pow(scale);
    let cents = (2 * numerator + denominator) / (2 * denominator);
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// What `check_html_report.py` saw; `None` when no browser could be started here.
fn render(page: &std::path::Path, screenshot: &std::path::Path) -> Option<serde_json::Value> {
    let output = common::try_python(
        "check_html_report.py",
        &[page.to_str().unwrap(), screenshot.to_str().unwrap()],
    );
    if output.status.code() == Some(3) {
        let why = text(&output.stderr);
        assert!(
            std::env::var("FXPIPE_TEST_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "FXPIPE_TEST_REQUIRE_BROWSER=1 but no browser: {why}"
        );
        eprintln!(
            "SKIPPED the browser checks: {why} (bash tests/run.sh installs Debian's chromium and playwright)"
        );
        return None;
    }
    assert!(
        output.status.success(),
        "check_html_report.py failed:\n{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("JSON from check_html_report.py"))
}

/// Band → accounts, counted from `fxpipe report creditworthiness`.
fn bands_printed(lake: &Lake) -> BTreeMap<String, String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let out = lake.run(&["report", "creditworthiness", "--format", "csv"]);
    for record in csv::Reader::from_reader(out.as_bytes()).records() {
        let record = record.expect("CSV row");
        *counts.entry(record[5].to_string()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(band, n)| (band, n.to_string()))
        .collect()
}

#[test]
fn html_report_renders_offline_with_the_reports_numbers() {
    let lake = golden_lake();
    let page = lake.file("credit.html");
    let output = lake.try_run(&["report", "--html", page.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    assert!(
        text(&output.stderr).contains(&format!(
            "wrote the credit report to {} (2 accounts, base currency SGD)",
            page.display()
        )),
        "{}",
        text(&output.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing that would fetch anything.
    for needle in [
        "<script", "<link", "src=", "@import", "url(", "http://", "https://",
    ] {
        let found = html.replace("http://www.w3.org/2000/svg", "");
        assert!(!found.contains(needle), "the page holds {needle:?}");
    }
    assert!(html.matches("<svg").count() >= 4, "{html}");
    // Exact decimals, grouped for reading.
    for number in [
        "1,360,124.87",
        "7,671.1844",
        "41,194.26",
        "-1,333,454.82",
        "99.9900",
    ] {
        assert!(html.contains(number), "{number} missing");
    }

    let screenshot = lake.file("credit.png");
    let Some(seen) = render(&page, &screenshot) else {
        return;
    };
    let url = url_of(&page);
    assert_eq!(
        seen["requests"],
        serde_json::json!([url]),
        "{}",
        seen["requests"]
    );
    let charts = seen["charts"].as_array().expect("charts");
    // Bands, exposure, and one per account.
    assert_eq!(charts.len(), 4, "{charts:?}");
    for chart in charts {
        assert!(
            chart[0].as_f64() > Some(100.0) && chart[1].as_f64() > Some(40.0),
            "{chart}"
        );
    }
    let bands: BTreeMap<String, String> =
        serde_json::from_value(seen["bands"].clone()).expect("bands");
    assert_eq!(bands, bands_printed(&lake));
    assert_eq!(bands.len(), 2);
    // The versions named are the tables' latest (commits counted in their logs).
    let versions = &seen["versions"];
    for (table, path) in [
        ("processed", "banktxn/processed"),
        ("loads", "banktxn/loads"),
        ("rejects", "banktxn/rejects"),
    ] {
        assert_eq!(
            versions[table].as_str().map(str::to_string),
            Some((lake.commits(path) - 1).to_string()),
            "{table}: {versions}"
        );
    }
    let shown = seen["text"].as_str().expect("text");
    for line in [
        "Rows read 18 = loaded 9 + rejected 9 ✓ reconciles",
        "INR\t1\t99.9900",
        "bad_date\t1",
        "409000611074\t26,670.05\t1,360,124.87\t0.0196\tLow Creditworthiness\t0",
        "USD\t0.00\t1,360,000.00\t-1,360,000.00\t0",
        "All 2 accounts are charted.",
        "Account 409000611074 · balance -1,333,454.82 SGD",
    ] {
        assert!(shown.contains(line), "{line:?} not on the page:\n{shown}");
    }
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
}

fn url_of(path: &std::path::Path) -> String {
    url::Url::from_file_path(path)
        .expect("absolute")
        .to_string()
}

#[test]
fn html_report_escapes_data() {
    let lake = Lake::new();
    common::ingest_golden_rates(&lake, "2017-07-01");
    let csv = lake.file("hostile.csv");
    std::fs::write(
        &csv,
        "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n\
         <img src=x onerror=alert(1)>,29-Jun-17,x,,29-Jun-17,,,10,INR,\n\
         \"<script>document.title='owned'</script>&amp;\",29-Jun-17,x,,29-Jun-17,5,INR,,,\n\
         409,29-Jun-17,x,,29-Jun-17,5,ZZZ,,,\n",
    )
    .unwrap();
    lake.run(&["load", csv.to_str().unwrap()]);
    lake.run(&["normalize"]);
    let page = lake.file("hostile.html");
    lake.run(&["report", "--html", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<img"), "unescaped account number");
    assert!(!html.contains("<script"), "unescaped account number");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;&amp;amp;"));

    let screenshot = lake.file("hostile.png");
    let Some(seen) = render(&page, &screenshot) else {
        return;
    };
    assert_eq!(seen["requests"], serde_json::json!([url_of(&page)]));
    let shown = seen["text"].as_str().expect("text");
    assert!(shown.contains("<img src=x onerror=alert(1)>"), "{shown}");
    assert!(shown.contains("ZZZ\t1\t5.0000"), "unconverted: {shown}");
}

#[test]
fn balance_history_and_html_on_the_cluster_equal_embedded() {
    let lake = golden_lake();
    let cluster = Cluster::start(2, &[]);
    let address = cluster.address();
    for args in [
        &["report", "balance-history", "--format", "csv"][..],
        &[
            "report",
            "balance-history",
            "--account-currency",
            "INR",
            "--format",
            "csv",
        ],
    ] {
        let embedded = lake.run(args);
        let mut on_cluster = vec!["--cluster", address.as_str()];
        on_cluster.extend_from_slice(args);
        assert_eq!(lake.run(&on_cluster), embedded, "{args:?}");
    }
    let embedded = lake.file("embedded.html");
    let distributed = lake.file("cluster.html");
    lake.run(&["report", "--html", embedded.to_str().unwrap()]);
    lake.run(&[
        "--cluster",
        &address,
        "report",
        "--html",
        distributed.to_str().unwrap(),
    ]);
    // The same page but for the time it was generated.
    let without_time = |path: &std::path::Path| {
        let html = std::fs::read_to_string(path).unwrap();
        let start = html.find(" · generated ").expect("a generated line");
        let end = start + html[start..].find("</p>").expect("end of line");
        format!("{}{}", &html[..start], &html[end..])
    };
    assert_eq!(without_time(&distributed), without_time(&embedded));
    let jobs = cluster
        .http_get("/api/jobs")
        .expect("the scheduler's job list");
    assert!(jobs.matches("job_id").count() >= 6, "{jobs}");
}
