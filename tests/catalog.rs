//! `fxpipe catalog athena|glue`: Athena DDL and queries for the lake's Delta tables, and their
//! registration in the Glue Data Catalog (moto's Glue on 127.0.0.1), checked with independent
//! tools: sqlglot parses the script as Athena SQL, deltalake (Python) opens every location,
//! boto3 reads back what Glue holds, and the Athena queries give the reports' numbers.

mod common;

use std::path::Path;
use std::process::Output;

use common::moto::{self, Moto};
use common::{golden_lake, Lake};

/// The six tables: name and folder under the lake root, in the order the catalog prints them.
const TABLES: [(&str, &str); 6] = [
    ("processed", "banktxn/processed"),
    ("transactions", "banktxn/parquet"),
    ("rates", "api_response/response"),
    ("rates_errors", "error_temp_dir/error_error"),
    ("rejects", "banktxn/rejects"),
    ("loads", "banktxn/loads"),
];

const REPORTS: [&str; 6] = [
    "account-summary",
    "creditworthiness",
    "deposits-by-currency",
    "currency-exposure",
    "monthly-flows",
    "balance-history",
];

/// The location the catalog must give a table: the folder's URL, with a trailing slash.
fn location(lake: &Lake, folder: &str) -> String {
    match &lake.s3 {
        Some((_, bucket)) => format!("s3://{bucket}/lake/{folder}/"),
        None => {
            let root = std::fs::canonicalize(lake.path()).expect("lake folder");
            format!("file://{}/{folder}/", root.display())
        }
    }
}

/// The exact DDL line of one table.
fn ddl(database: &str, table: &str, location: &str) -> String {
    format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table}` LOCATION '{location}' \
         TBLPROPERTIES ('table_type'='DELTA');"
    )
}

/// The queries of an Athena script, by report name (the text after each marker line, up to
/// its closing `;`).
fn queries(script: &str) -> Vec<(String, String)> {
    script
        .split("\n-- fxpipe report ")
        .skip(1)
        .map(|part| {
            let (name, rest) = part.split_once('\n').expect("a query after its name");
            let sql = rest.split(";\n").next().expect("a query").trim();
            (name.to_string(), sql.to_string())
        })
        .collect()
}

/// `fxpipe catalog glue` against a moto server.
fn glue(lake: &Lake, moto: &Moto, database: &str) -> Output {
    lake.command(&["catalog", "glue", "--database", database])
        .envs(moto.env())
        .output()
        .expect("run fxpipe")
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A decimal as text without insignificant zeros (`1.5000` and `1.5` are the same number).
fn number(cell: &str) -> String {
    if !cell.contains('.') || cell.parse::<f64>().is_err() {
        return cell.to_string();
    }
    cell.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("CSV row").iter().map(number).collect())
        .collect()
}

/// Every analytics query, run as printed (database `public` is the schema `fxpipe sql`
/// registers the tables in), gives the report's rows, in order, number for number.
fn assert_queries_match_reports(lake: &Lake) {
    let script = lake.run(&["catalog", "athena", "--database", "public"]);
    let printed = queries(&script);
    let names: Vec<&str> = printed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, REPORTS, "{script}");
    for (name, sql) in &printed {
        let athena = lake.run(&["sql", sql, "--format", "csv"]);
        let report = lake.run(&["report", name, "--format", "csv"]);
        let header = |out: &str| out.lines().next().unwrap_or_default().to_string();
        assert_eq!(header(&athena), header(&report), "{name}");
        assert_eq!(csv_rows(&athena), csv_rows(&report), "{name}:\n{sql}");
        assert!(!csv_rows(&report).is_empty(), "{name} has rows");
    }
}

#[test]
fn athena_ddl_names_every_table_of_a_local_lake_at_its_folder() {
    let lake = golden_lake();
    let out = lake.run(&["catalog", "athena", "--database", "bank_lake"]);
    assert!(
        out.contains("\nCREATE DATABASE IF NOT EXISTS `bank_lake`;\n"),
        "{out}"
    );
    for (table, folder) in TABLES {
        let url = location(&lake, folder);
        assert!(
            out.contains(&ddl("bank_lake", table, &url)),
            "{table}:\n{out}"
        );
        let path = url::Url::parse(&url).unwrap().to_file_path().unwrap();
        assert!(path.join("_delta_log").is_dir(), "{table}: {url}");
    }
    assert_eq!(out.matches("CREATE EXTERNAL TABLE").count(), TABLES.len());
    // In the catalog's order, processed first.
    let positions: Vec<usize> = TABLES
        .iter()
        .map(|(t, _)| out.find(&format!("`{t}`")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(out.contains("not on S3"), "a local lake is flagged: {out}");
    for report in REPORTS {
        assert!(
            out.contains(&format!("\n-- fxpipe report {report}\n")),
            "{out}"
        );
    }
    for (name, sql) in queries(&out) {
        assert!(
            sql.contains("FROM \"bank_lake\".processed"),
            "{name}: {sql}"
        );
    }

    // --output writes the same script to a file, which sqlglot parses as Athena SQL.
    let file = lake.file("athena.sql");
    let said = lake.run(&[
        "catalog",
        "athena",
        "--database",
        "bank_lake",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(said.contains("6 tables and 6 queries"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), out);
    let checked: serde_json::Value = serde_json::from_str(&common::python_env(
        "check_athena.py",
        &[file.to_str().unwrap()],
        &[],
    ))
    .unwrap();
    assert_eq!(checked["databases"], serde_json::json!(["bank_lake"]));
    assert_eq!(checked["queries"], 6);
    assert_eq!(checked["divisions"], 1, "the creditworthiness ratio");
    let tables = checked["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 6);
    for ((table, folder), parsed) in TABLES.iter().zip(tables) {
        assert_eq!(parsed["database"], "bank_lake");
        assert_eq!(parsed["name"], *table);
        assert_eq!(parsed["location"], location(&lake, folder));
        assert_eq!(parsed["table_type"], "DELTA");
    }
}

#[test]
fn athena_names_only_the_tables_the_lake_has() {
    let lake = Lake::new();
    common::ingest_golden_rates(&lake, "2017-07-02");
    let out = lake.run(&["catalog", "athena", "--database", "fxpipe"]);
    let listed: Vec<&str> = TABLES
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| out.contains(&format!("`fxpipe`.`{t}`")))
        .collect();
    assert_eq!(listed, ["rates", "rates_errors"], "{out}");
    assert!(
        out.contains("Not in this lake yet (no commit): processed, transactions, rejects, loads."),
        "{out}"
    );
    assert!(out.contains("run `fxpipe normalize`"), "{out}");
}

#[test]
fn athena_queries_give_the_reports_numbers() {
    let lake = golden_lake();
    assert_queries_match_reports(&lake);
    // And one number of the original analytics, as the Athena query computes it:
    // 409000493210 deposits 41192.11 + 2.15, withdrawals 5.37.
    let script = lake.run(&["catalog", "athena", "--database", "public"]);
    let (_, sql) = queries(&script)
        .into_iter()
        .find(|(n, _)| n == "creditworthiness")
        .unwrap();
    let out = lake.run(&["sql", &sql, "--format", "csv"]);
    assert!(
        out.contains("SGD,409000493210,5.37,41194.26,7671.1844,High Creditworthiness,"),
        "{out}"
    );
}

#[test]
fn athena_creditworthiness_keeps_the_bands_and_the_ratio_exact() {
    // The band edges to the cent, deposits only, no activity, and a ratio on a rounding tie:
    // 0.01 / 0.32 = 0.03125 → 0.0313 (half away from zero, as the report rounds).
    let accounts = [
        ("1001", "3.30", "4.95", "Moderate Creditworthiness", "1.5"),
        ("1002", "3.30", "4.96", "High Creditworthiness", "1.503"),
        ("1004", "7.77", "7.77", "Moderate Creditworthiness", "1"),
        ("1006", "7.77", "7.76", "Low Creditworthiness", "0.9987"),
        ("1007", "0.00", "0.01", "High Creditworthiness", ""),
        ("1008", "0.00", "0.00", "No Activity", ""),
        ("1009", "0.32", "0.01", "Low Creditworthiness", "0.0313"),
        ("1010", "3.00", "2.00", "Low Creditworthiness", "0.6667"),
    ];
    let mut csv = "account_no,date,transaction_details,chq_no,value_date,withdrawal_amt,withdrawal_currency,deposit_amt,deposit_currency,balance_amt\n".to_string();
    for (account, withdrawn, deposited, _, _) in accounts {
        csv += &format!("{account},29-Jun-17,out,,29-Jun-17,{withdrawn},SGD,,,\n");
        csv += &format!("{account},29-Jun-17,in,,29-Jun-17,,,{deposited},SGD,\n");
    }
    let lake = Lake::new();
    common::ingest_golden_rates(&lake, "2017-07-01");
    let file = lake.file("bands.csv");
    std::fs::write(&file, csv).unwrap();
    lake.run(&["load", file.to_str().unwrap()]);
    lake.run(&["normalize"]);
    assert_queries_match_reports(&lake);
    let script = lake.run(&["catalog", "athena", "--database", "public"]);
    let (_, sql) = queries(&script)
        .into_iter()
        .find(|(n, _)| n == "creditworthiness")
        .unwrap();
    let rows = csv_rows(&lake.run(&["sql", &sql, "--format", "csv"]));
    assert_eq!(rows.len(), accounts.len());
    for (row, (account, _, _, band, ratio)) in rows.iter().zip(accounts) {
        assert_eq!(row[1], account);
        assert_eq!(row[4], ratio, "account {account}");
        assert_eq!(row[5], band, "account {account}");
    }
}

#[test]
fn athena_queries_read_converted_columns_named_after_the_base() {
    // normalize --columns-follow-base writes withdrawal_eur_amt: the queries name those columns,
    // as `fxpipe report` reads them, and give the report's numbers.
    let lake = golden_lake();
    lake.run(&[
        "--base-currency",
        "eur",
        "normalize",
        "--columns-follow-base",
    ]);
    let script = lake.run(&["catalog", "athena", "--database", "public"]);
    assert!(!script.contains("withdrawal_sgd_amt"), "{script}");
    assert!(script.contains("sum(withdrawal_eur_amt)"), "{script}");
    assert!(script.contains("sum(deposit_eur_amt)"), "{script}");
    assert_queries_match_reports(&lake);
    let (_, sql) = queries(&script)
        .into_iter()
        .find(|(n, _)| n == "account-summary")
        .unwrap();
    let out = lake.run(&["sql", &sql, "--format", "csv"]);
    assert!(out.contains("EUR,409000493210,4,3.48,"), "{out}");
}

#[test]
fn every_analytics_file_is_a_report() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/analytics");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    assert_eq!(names.len(), REPORTS.len());
    for name in &names {
        let report = name.trim_end_matches(".sql").replace('_', "-");
        assert!(REPORTS.contains(&report.as_str()), "{name}");
    }
    // One source per query: Athena's text is rendered from these files, not kept beside them.
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sql/athena")
        .exists());
}

#[test]
fn catalog_locations_open_as_delta_tables_with_deltalake() {
    let lake = golden_lake();
    let out = lake.run(&["catalog", "athena", "--database", "bank_lake"]);
    let mut args = Vec::new();
    for (table, folder) in TABLES {
        let url = location(&lake, folder);
        assert!(out.contains(&format!("LOCATION '{url}'")), "{table}: {out}");
        args.push(format!("{url}={}", lake.count(table)));
    }
    assert_eq!(lake.count("processed"), 9, "the golden transactions");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let checked = common::python_env("check_delta_locations.py", &args, &[]);
    assert_eq!(checked.matches("ok: ").count(), 6, "{checked}");
}

#[test]
fn a_database_name_athena_or_glue_would_change_is_refused() {
    let lake = golden_lake();
    for bad in ["Bank-Lake", "bank lake", "bank`lake", ""] {
        let output = lake.try_run(&["catalog", "athena", "--database", bad]);
        assert!(!output.status.success(), "{bad:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("lowercase letters, digits and underscores"),
            "{bad:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{bad:?}");
    }
    let output = lake.try_run(&["catalog", "athena", "--database", "Bank-Lake"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("bank_lake"));
}

#[test]
fn catalog_reads_the_lake_and_never_creates_one() {
    let lake = Lake::new();
    let output = lake.try_run(&["catalog", "athena", "--database", "bank"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no lake at"),
        "{}",
        text(&output)
    );
    assert!(!lake.path().exists(), "a mistyped --lake is not created");

    let lake = golden_lake();
    let mut before = lake.list("");
    before.sort();
    lake.run(&["catalog", "athena", "--database", "bank"]);
    let moto = Moto::start();
    assert!(glue(&lake, &moto, "bank").status.success());
    let mut after = lake.list("");
    after.sort();
    assert_eq!(before, after, "catalog wrote to the lake");
}

/// What moto's Glue holds for `database`, through boto3.
fn glue_catalog(moto: &Moto, database: &str) -> serde_json::Value {
    serde_json::from_str(&common::python_env(
        "check_glue.py",
        &[database],
        &moto.env(),
    ))
    .unwrap()
}

fn assert_glue_tables(lake: &Lake, moto: &Moto, versions: u64) {
    let catalog = glue_catalog(moto, "bank_lake");
    assert_eq!(catalog["database"], "bank_lake");
    let mut tables = catalog["tables"].as_array().unwrap().clone();
    tables.sort_by_key(|t| t["name"].as_str().unwrap().to_string());
    let mut expected = TABLES.to_vec();
    expected.sort();
    assert_eq!(tables.len(), expected.len(), "{catalog}");
    for (found, (name, folder)) in tables.iter().zip(expected) {
        let url = location(lake, folder);
        assert_eq!(found["name"], name);
        assert_eq!(found["table_type"], "EXTERNAL_TABLE", "{name}");
        assert_eq!(
            found["parameters"],
            serde_json::json!({
                "table_type": "DELTA",
                "spark.sql.sources.provider": "delta",
                "EXTERNAL": "TRUE",
            }),
            "{name}"
        );
        assert_eq!(found["location"], url.as_str(), "{name}");
        assert_eq!(found["serde_path"], url.as_str(), "{name}");
        assert_eq!(found["columns"], 0, "{name}");
        assert_eq!(found["partition_keys"], 0, "{name}");
        assert_eq!(found["versions"], versions, "{name}: {catalog}");
    }
}

#[test]
fn glue_registers_every_table_and_a_rerun_updates_them() {
    let lake = golden_lake();
    let moto = Moto::start();
    let first = glue(&lake, &moto, "bank_lake");
    assert!(first.status.success(), "{}", text(&first));
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(
        said.contains("glue database bank_lake (eu-west-1): created"),
        "{said}"
    );
    assert_eq!(said.matches(": created at ").count(), 6, "{said}");
    assert_glue_tables(&lake, &moto, 1);

    // A re-run updates each entry in place: the same six tables, each with a second version.
    let second = glue(&lake, &moto, "bank_lake");
    assert!(second.status.success(), "{}", text(&second));
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(
        said.contains("glue database bank_lake (eu-west-1): exists"),
        "{said}"
    );
    assert_eq!(said.matches(": updated at ").count(), 6, "{said}");
    assert_glue_tables(&lake, &moto, 2);
    for output in [&first, &second] {
        assert!(!text(output).contains(moto::SECRET_KEY));
    }
}

/// `fxpipe run --glue-database` refreshes the catalog as its fourth step, after the day's
/// work: every table registered (updated the second day), said on the step's line.
#[test]
fn run_with_a_glue_database_registers_the_tables_as_its_last_step() {
    let lake = golden_lake();
    let moto = Moto::start();
    let run = || {
        lake.command(&["run", "--skip-ingest", "--glue-database", "bank_lake"])
            .envs(moto.env())
            .output()
            .expect("run fxpipe")
    };
    let first = run();
    assert!(first.status.success(), "{}", text(&first));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("run: step 4/4, catalog: glue database bank_lake (eu-west-1): 6 tables registered, 6 of them new"),
        "{stderr}"
    );
    assert_glue_tables(&lake, &moto, 1);
    let second = run();
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("6 tables registered, 0 of them new"),
        "{}",
        text(&second)
    );
    assert_glue_tables(&lake, &moto, 2);
    // A name Glue would change is refused before any step runs.
    let bad = lake
        .command(&["run", "--skip-ingest", "--glue-database", "Bank-Lake"])
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        !String::from_utf8_lossy(&bad.stderr).contains("step 1/4"),
        "{}",
        text(&bad)
    );
}

#[test]
fn glue_without_a_region_is_refused() {
    let lake = golden_lake();
    let moto = Moto::start();
    let output = lake
        .command(&["catalog", "glue", "--database", "bank_lake"])
        .envs(moto.env().into_iter().filter(|(k, _)| *k != "AWS_REGION"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no AWS region is configured"), "{stderr}");
    assert!(stderr.contains("AWS_REGION"), "{stderr}");
    // Nothing was registered anywhere (moto would have taken us-east-1).
    let databases = common::python_env(
        "check_glue.py",
        &["--list-databases"],
        &[moto.env(), vec![("AWS_REGION", "us-east-1".to_string())]].concat(),
    );
    assert_eq!(databases.trim(), "[]");
}

#[test]
fn glue_errors_name_the_call_and_what_to_check_and_never_the_secret() {
    let lake = golden_lake();
    // Nothing listens on this port.
    let endpoint = format!("http://127.0.0.1:{}", moto::free_port());
    let output = lake
        .command(&["catalog", "glue", "--database", "bank_lake"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", moto::SECRET_KEY)
        .env("AWS_REGION", moto::REGION)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Glue GetDatabase of database bank_lake in eu-west-1 failed"),
        "{stderr}"
    );
    for hint in ["credentials", "AWS_ENDPOINT_URL", "glue:GetDatabase"] {
        assert!(stderr.contains(hint), "{hint}: {stderr}");
    }
    assert!(!text(&output).contains(moto::SECRET_KEY));
}

/// A lake on S3 (a moto server of its own) with the golden rates and transactions, normalized.
fn golden_s3_lake() -> Lake {
    let lake = Lake::s3();
    common::ingest_golden_rates(&lake, "2017-07-02");
    let csv = common::golden_dir().join("transactions.csv");
    lake.run(&["load", csv.to_str().unwrap()]);
    lake.run(&["normalize"]);
    lake
}

#[test]
fn athena_ddl_of_an_s3_lake_points_at_s3_and_each_location_opens_as_delta() {
    let lake = golden_s3_lake();
    let out = lake.run(&["catalog", "athena", "--database", "bank_lake"]);
    assert!(!out.contains("not on S3"), "{out}");
    assert!(
        out.contains("for the fxpipe lake at s3://fxpipe-test-lake/lake"),
        "{out}"
    );
    let mut args = Vec::new();
    for (table, folder) in TABLES {
        let url = location(&lake, folder);
        assert!(url.starts_with("s3://fxpipe-test-lake/lake/"));
        assert!(
            out.contains(&ddl("bank_lake", table, &url)),
            "{table}:\n{out}"
        );
        args.push(format!("{url}={}", lake.count(table)));
    }
    assert_eq!(out.matches("CREATE EXTERNAL TABLE").count(), TABLES.len());
    assert_eq!(lake.count("processed"), 9, "the golden transactions");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let checked = common::python_env("check_delta_locations.py", &args, &lake.moto().env());
    assert_eq!(checked.matches("ok: s3://").count(), 6, "{checked}");
    assert!(!out.contains(moto::SECRET_KEY));
    assert_queries_match_reports(&lake);
}

#[test]
fn glue_registers_the_tables_of_an_s3_lake_and_a_rerun_updates_them() {
    let lake = golden_s3_lake();
    let moto = lake.moto();
    let first = glue(&lake, moto, "bank_lake");
    assert!(first.status.success(), "{}", text(&first));
    let said = String::from_utf8_lossy(&first.stdout);
    assert_eq!(said.matches(": created at s3://").count(), 6, "{said}");
    assert!(!said.contains("not on S3"), "{said}");
    assert_glue_tables(&lake, moto, 1);
    let second = glue(&lake, moto, "bank_lake");
    assert!(second.status.success(), "{}", text(&second));
    let said = String::from_utf8_lossy(&second.stdout);
    assert_eq!(said.matches(": updated at s3://").count(), 6, "{said}");
    assert_glue_tables(&lake, moto, 2);
    for output in [&first, &second] {
        assert!(!text(output).contains(moto::SECRET_KEY));
    }
}
