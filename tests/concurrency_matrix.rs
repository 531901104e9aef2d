//! The concurrency matrix of issue 21: every pair of fxpipe's writing commands (ingest, load,
//! normalize, normalize of a month range, optimize, vacuum) started together, on a new lake and
//! on an existing one, on a local folder and on S3 (moto).
//!
//! The rule checked is serializability: whatever two commands started together leave must
//! equal what one of their two serial orders leaves (A then B, or B then A), table by table:
//! rows, distinct keys (no (day, currency) twice in `rates`, no (file, line) twice in
//! `transactions`, `rejects` or `processed`) and the sums of every amount. Both commands exit 0
//! (docs/lake.md#two-commands-at-once: its table of concurrent outcomes covers every pair of this matrix), no
//! delta-rs text reaches the terminal, and every file any version of any table names is still
//! there.
//!
//! On S3 each command talks to moto through a fault proxy of its own that answers its data
//! uploads a second late and its listings 0.3 s late, so both have planned their commits
//! before either lands; the test checks from the two proxies' request logs that the commands
//! were talking to S3 at the same time.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::proxy::{spawn_via, Fault, Proxy, Rule};
use common::Lake;

/// The writing commands of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Command {
    /// Ingest, forced, of days that overlap the stored ones (replaced) and new ones.
    Ingest,
    /// Load of a second export (both members of a Load+Load pair load the same file).
    Load,
    /// Normalize of the whole table.
    Normalize,
    /// Normalize of one month.
    Months,
    Optimize,
    /// Vacuum with the default retention.
    Vacuum,
}

impl Command {
    const ALL: [Command; 6] = [
        Command::Ingest,
        Command::Load,
        Command::Normalize,
        Command::Months,
        Command::Optimize,
        Command::Vacuum,
    ];

    fn args(self, inputs: &Inputs) -> Vec<String> {
        let args: Vec<&str> = match self {
            Command::Ingest => vec![
                "ingest",
                "--source",
                &inputs.rates,
                "--from",
                "2017-02-15",
                "--to",
                "2017-03-31",
                "--batch-days",
                "7",
                "--force",
            ],
            Command::Load => vec!["load", inputs.second.to_str().unwrap()],
            Command::Normalize => vec!["normalize"],
            Command::Months => vec!["normalize", "--from", "2017-02", "--to", "2017-02"],
            Command::Optimize => vec!["optimize"],
            Command::Vacuum => vec!["vacuum"],
        };
        args.into_iter().map(str::to_string).collect()
    }

    fn maintains(self) -> bool {
        matches!(self, Command::Optimize | Command::Vacuum)
    }

    fn normalizes(self) -> bool {
        matches!(self, Command::Normalize | Command::Months)
    }
}

/// Every unordered pair, each command with itself included.
fn pairs() -> Vec<(Command, Command)> {
    let mut pairs = Vec::new();
    for (i, a) in Command::ALL.iter().enumerate() {
        for b in &Command::ALL[i..] {
            pairs.push((*a, *b));
        }
    }
    pairs
}

/// What the lake holds before a pair starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum State {
    /// The tables the pair writes do not exist yet, as far as the pair allows: an empty lake;
    /// rates only when optimize or vacuum is one of them; rates and one export loaded, nothing
    /// normalized, when one normalizes.
    New,
    /// Rates for January and February 2017 (a file a week), one export loaded, normalized.
    /// `processed` has one file a month (an embedded normalize writes no more), so optimize
    /// compacts only `rates` here.
    Existing,
}

/// The lakes the pairs start from, made once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Template {
    Empty,
    /// Rates only.
    Rates,
    Loaded,
    Normalized,
}

fn template(state: State, pair: (Command, Command)) -> Template {
    match state {
        State::Existing => Template::Normalized,
        State::New if pair.0.normalizes() || pair.1.normalizes() => Template::Loaded,
        // Optimize and vacuum need a lake (an S3 prefix with nothing in it is none): theirs
        // holds rates, and the other command makes the transactions tables.
        State::New if [pair.0, pair.1].iter().any(|c| c.maintains()) => Template::Rates,
        State::New => Template::Empty,
    }
}

/// Generated inputs: rate files for the first quarter of 2017 and two exports of January and
/// February (a few malformed rows each, so `rejects` is written too).
struct Inputs {
    _dir: tempfile::TempDir,
    rates: String,
    first: PathBuf,
    second: PathBuf,
    templates: Mutex<HashMap<Template, &'static Lake>>,
    serial: Mutex<HashMap<(Template, Command, Command), Fingerprint>>,
}

fn inputs() -> &'static Inputs {
    static INPUTS: OnceLock<Inputs> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Lake::new();
        let rates = dir.path().join("rates");
        scratch.run(&[
            "gen",
            "rates",
            "--from",
            "2017-01-01",
            "--to",
            "2017-03-31",
            "--out",
            rates.to_str().unwrap(),
        ]);
        let export = |name: &str, seed: &str, from: &str| {
            let path = dir.path().join(name);
            scratch.run(&[
                "gen",
                "transactions",
                "--rows",
                "400",
                "--seed",
                seed,
                "--from",
                from,
                "--to",
                "2017-02-28",
                "--dirty",
                "0.02",
                "--out",
                path.to_str().unwrap(),
            ]);
            path
        };
        let first = export("first.csv", "1", "2017-01-01");
        let second = export("second.csv", "2", "2017-01-15");
        Inputs {
            rates: format!("file://{}", rates.display()),
            first,
            second,
            _dir: dir,
            templates: Mutex::new(HashMap::new()),
            serial: Mutex::new(HashMap::new()),
        }
    })
}

impl Inputs {
    /// A local lake in the state `template` names (made on first use, then kept).
    fn template(&self, template: Template) -> &'static Lake {
        let mut templates = self.templates.lock().unwrap();
        templates.entry(template).or_insert_with(|| {
            let lake = Box::leak(Box::new(Lake::new()));
            std::fs::create_dir_all(lake.path()).unwrap();
            if template != Template::Empty {
                // A commit a week: several files a month, which optimize compacts.
                lake.run(&[
                    "ingest",
                    "--source",
                    &self.rates,
                    "--from",
                    "2017-01-01",
                    "--to",
                    "2017-02-28",
                    "--batch-days",
                    "7",
                ]);
            }
            if matches!(template, Template::Loaded | Template::Normalized) {
                lake.run(&["load", self.first.to_str().unwrap()]);
            }
            if template == Template::Normalized {
                lake.run(&["normalize"]);
            }
            lake
        })
    }

    /// What `first` then `second` leave on a copy of `template`, run one after the other.
    fn serial(&self, template: Template, first: Command, second: Command) -> Fingerprint {
        let key = (template, first, second);
        if let Some(known) = self.serial.lock().unwrap().get(&key) {
            return known.clone();
        }
        let lake = Lake::new();
        copy_lake(self.template(template), &lake);
        for command in [first, second] {
            let args = command.args(self);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lake.run(&args);
        }
        let found = fingerprint(&lake)
            .unwrap_or_else(|why| panic!("{first:?} then {second:?}, one after the other: {why}"));
        self.serial.lock().unwrap().insert(key, found.clone());
        found
    }
}

/// Copies a local lake into `to` (a local folder or an S3 lake): Delta logs name their data
/// files relative to the table, so the copy is the same lake.
fn copy_lake(from: &Lake, to: &Lake) {
    let root = from.path();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap();
            match &to.s3 {
                Some((server, bucket)) => server.put(
                    bucket,
                    &format!("lake/{}", relative.display()),
                    &std::fs::read(&path).unwrap(),
                ),
                None => {
                    let target = to.path().join(relative);
                    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                    std::fs::copy(&path, target).unwrap();
                }
            }
        }
    }
}

/// Each table's rows, distinct keys and amount sums, as text (tables that do not exist are
/// left out).
type Fingerprint = Vec<Vec<String>>;

/// Tables (name, lake path, key, sums) the fingerprint covers.
const TABLES: [(&str, &str, &str, &str); 6] = [
    (
        "rates",
        "api_response/response",
        "concat(CAST(run_date AS VARCHAR), '/', target_currency)",
        "CAST(sum(rates_base_usd) AS VARCHAR)",
    ),
    (
        "rates_errors",
        "error_temp_dir/error_error",
        "CAST(run_date AS VARCHAR)",
        "''",
    ),
    (
        "transactions",
        "banktxn/parquet",
        "concat(source_file, '#', CAST(source_line AS VARCHAR))",
        "concat(CAST(sum(withdrawal_amt) AS VARCHAR), '/', CAST(sum(deposit_amt) AS VARCHAR), '/', CAST(sum(balance_amt) AS VARCHAR))",
    ),
    (
        "rejects",
        "banktxn/rejects",
        "concat(source_file, '#', CAST(source_line AS VARCHAR))",
        "CAST(count(DISTINCT reason) AS VARCHAR)",
    ),
    (
        "loads",
        "banktxn/loads",
        "source_file",
        "concat(CAST(sum(rows_loaded) AS VARCHAR), '/', CAST(sum(rows_rejected) AS VARCHAR))",
    ),
    (
        "processed",
        "banktxn/processed",
        "concat(source_file, '#', CAST(source_line AS VARCHAR))",
        "concat(CAST(sum(withdrawal_sgd_amt) AS VARCHAR), '/', CAST(sum(deposit_sgd_amt) AS VARCHAR), '/', string_agg(DISTINCT base_currency, ','))",
    ),
];

fn fingerprint(lake: &Lake) -> Result<Fingerprint, String> {
    let selects: Vec<String> = TABLES
        .iter()
        .filter(|(_, path, _, _)| !lake.list(&format!("{path}/_delta_log")).is_empty())
        .map(|(name, _, key, sums)| {
            format!(
                "SELECT '{name}' AS t, CAST(count(*) AS VARCHAR) AS n, \
                 CAST(count(DISTINCT {key}) AS VARCHAR) AS k, {sums} AS s FROM {name}"
            )
        })
        .collect();
    if selects.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = lake.query(&selects.join(" UNION ALL "));
    rows.sort();
    match rows.iter().find(|row| row[1] != row[2]) {
        Some(row) => Err(format!("{} holds a key twice: {rows:?}", row[0])),
        None => Ok(rows),
    }
}

/// Every data file any version of any table adds is still in the lake (a version that names a
/// missing file cannot be read, or time-travelled to).
fn files_of_every_version_present(lake: &Lake) -> Result<(), String> {
    for (name, path, _, _) in TABLES {
        let present: BTreeSet<String> = lake.list(path).into_iter().collect();
        for entry in present.iter().filter(|f| {
            f.starts_with("_delta_log/")
                && f.ends_with(".json")
                && !f["_delta_log/".len()..].contains('/')
        }) {
            let log = lake.read(&format!("{path}/{entry}"));
            for line in String::from_utf8_lossy(&log).lines() {
                let action: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(file) = action["add"]["path"].as_str() {
                    let file = percent_encoding::percent_decode_str(file)
                        .decode_utf8_lossy()
                        .to_string();
                    if !present.contains(&file) {
                        return Err(format!("{name} {entry} adds {file}, which is gone"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A proxy for one command of an S3 pair: its uploads answered a second late and its listings
/// 0.3 s late.
fn slow_proxy(lake: &Lake) -> Proxy {
    let proxy = Proxy::start(lake.moto().port);
    proxy.set(Rule::always(
        Fault::Slow(Duration::from_secs(1)),
        "PUT",
        ".parquet",
    ));
    proxy.add(Rule::always(
        Fault::Slow(Duration::from_millis(300)),
        "GET",
        "list-type=2",
    ));
    proxy
}

/// When a proxy's first and last requests arrived.
fn span(proxy: &Proxy) -> (std::time::Instant, std::time::Instant) {
    let seen = proxy.seen();
    let first = seen
        .iter()
        .map(|s| s.at)
        .min()
        .expect("the command used S3");
    let last = seen.iter().map(|s| s.at).max().unwrap();
    (first, last)
}

/// Runs one pair on a lake in `state`; `Err` says what went wrong.
fn run_pair(s3: bool, state: State, pair: (Command, Command)) -> Result<(), String> {
    let inputs = inputs();
    let template = template(state, pair);
    let lake = if s3 { Lake::s3() } else { Lake::new() };
    copy_lake(inputs.template(template), &lake);
    let proxies = s3.then(|| (slow_proxy(&lake), slow_proxy(&lake)));
    let spawn = |command: Command, proxy: Option<&Proxy>| {
        let args = command.args(inputs);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn_via(&lake, proxy, &args)
    };
    let a = spawn(pair.0, proxies.as_ref().map(|p| &p.0));
    let b = spawn(pair.1, proxies.as_ref().map(|p| &p.1));
    let outputs: [(Command, Output); 2] = [
        (pair.0, a.wait_with_output().unwrap()),
        (pair.1, b.wait_with_output().unwrap()),
    ];
    for (command, output) in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!("{command:?} failed ({}):\n{stderr}", output.status));
        }
        if let Some(text) = common::DELTA_RS_WORDS.iter().find(|t| stderr.contains(*t)) {
            return Err(format!(
                "{command:?} printed delta-rs's {text:?}:\n{stderr}"
            ));
        }
    }
    if let Some((first, second)) = &proxies {
        let (a0, a1) = span(first);
        let (b0, b1) = span(second);
        if a0.max(b0) >= a1.min(b1) {
            return Err("the two commands did not use S3 at the same time".into());
        }
    }
    files_of_every_version_present(&lake)?;
    let found = fingerprint(&lake)?;
    let orders = [
        inputs.serial(template, pair.0, pair.1),
        inputs.serial(template, pair.1, pair.0),
    ];
    if !orders.contains(&found) {
        return Err(format!(
            "the tables match neither serial order:\nfound      {found:?}\n{:?} first {:?}\n{:?} first {:?}",
            pair.0, orders[0], pair.1, orders[1]
        ));
    }
    Ok(())
}

/// Runs every pair of the matrix in `state`, two at a time, and fails listing every pair that
/// broke the rule.
fn matrix(s3: bool, state: State) {
    let pairs = pairs();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&pair) = pairs.get(i) else { break };
                if let Err(why) = run_pair(s3, state, pair) {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{:?} + {:?}: {why}", pair.0, pair.1));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} pairs broke the rule on a {} {state:?} lake:\n\n{}",
        failures.len(),
        pairs.len(),
        if s3 { "S3" } else { "local" },
        failures.join("\n\n")
    );
}

#[test]
fn every_pair_at_once_on_a_new_local_lake_is_serializable() {
    matrix(false, State::New);
}

#[test]
fn every_pair_at_once_on_an_existing_local_lake_is_serializable() {
    matrix(false, State::Existing);
}

#[test]
fn every_pair_at_once_on_a_new_s3_lake_is_serializable() {
    matrix(true, State::New);
}

#[test]
fn every_pair_at_once_on_an_existing_s3_lake_is_serializable() {
    matrix(true, State::Existing);
}
