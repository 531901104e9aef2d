//! The page: one HTML file with its style and charts inline, nothing fetched when it is viewed
//! (no script, font, stylesheet or image from anywhere), so it can be mailed or archived.
//!
//! maud escapes every value put into the page, text and attributes alike: account numbers,
//! reject reasons and file names from the data cannot become markup.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::svg::{self, MonthPoint};
use super::{CreditReport, TextTable, CHARTED_ACCOUNTS, TOP_RATIO_ACCOUNTS};

/// The page's style: system fonts only (a font file would be a request).
const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #1565c0; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.meta { color: #555; } .note { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.92rem; }
th, td { padding: 0.25rem 0.7rem; border-bottom: 1px solid #ddd; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.job td { text-align: left; }
.row { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1rem; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 0.2rem; }
svg.chart { font-size: 13px; font-family: inherit; } svg .small { font-size: 11px; }
.ok { color: #2e7d32; font-weight: 600; } .bad { color: #c62828; font-weight: 600; }
";

/// An exact decimal's text with its integer digits grouped in thousands (`-1,333,454.82`);
/// anything that is not a plain decimal is returned as it is.
pub fn money(text: &str) -> String {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return text.to_string();
    }
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A cell's text: the value, or an em dash for NULL.
fn cell(value: Option<&str>) -> String {
    value.unwrap_or("—").to_string()
}

/// The whole page.
pub fn render(report: &CreditReport) -> String {
    let base = &report.base_currency;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Credit report — " (report.lake) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Credit report" }
                p.meta {
                    "Lake " code { (report.lake) } " · amounts in " strong #base-currency { (base) }
                    " · generated " (report.generated_at)
                }
                p.meta #versions {
                    "Computed from "
                    @for (i, (table, version)) in report.versions.iter().enumerate() {
                        @if i > 0 { ", " }
                        code { (table) } " version " span.version data-table=(table) { (version) }
                    }
                    "."
                }
                (bands(report))
                (top_ratio(report))
                (exposure(report))
                (history(report))
                (reconciliation(report))
                p.note {
                    "Every amount is computed from exact decimals (converted per transaction, rounded half away from zero to the cent); "
                    "the charts are drawn to scale from the same values. Amounts that could not be converted count as 0 and are listed under Reconciliation."
                }
            }
        }
    };
    page.into_string()
}

fn bands(report: &CreditReport) -> Markup {
    let rows: Vec<(String, String)> = (0..report.bands.len())
        .map(|r| {
            (
                cell(report.bands.get(r, "creditworthiness")),
                cell(report.bands.get(r, "accounts")),
            )
        })
        .collect();
    html! {
        section #creditworthiness {
            h2 { "Creditworthiness" }
            p.note {
                "Accounts per band, from " code { "fxpipe report creditworthiness" } ": High when deposits > 1.5 × withdrawals, "
                "Moderate from 1.0 to 1.5 ×, Low below; deposits without withdrawals are High. " (report.accounts) " accounts."
            }
            div.row {
                (svg::bars("Accounts per creditworthiness band", &rows))
                table #bands {
                    thead { tr { th { "Band" } th.num { "Accounts" } } }
                    tbody {
                        @for (band, accounts) in &rows {
                            tr { td { (band) } td.num data-band=(band) { (accounts) } }
                        }
                    }
                }
            }
        }
    }
}

fn top_ratio(report: &CreditReport) -> Markup {
    let t = &report.top_ratio;
    let base = &report.base_currency;
    html! {
        section #top-accounts {
            h2 { "Top accounts by deposit/withdrawal ratio" }
            p.note {
                "The " (TOP_RATIO_ACCOUNTS) " highest ratios (deposits without withdrawals first, their ratio being unbounded)."
            }
            table #top-ratio {
                thead { tr {
                    th { "Account" } th.num { "Deposits (" (base) ")" } th.num { "Withdrawals (" (base) ")" }
                    th.num { "Ratio" } th { "Band" } th.num { "Unconverted amounts" }
                } }
                tbody {
                    @for r in 0..t.len() {
                        tr {
                            td { (cell(t.get(r, "account_no"))) }
                            td.num { (money(&cell(t.get(r, "deposits_sgd")))) }
                            td.num { (money(&cell(t.get(r, "withdrawals_sgd")))) }
                            td.num { (ratio(t, r)) }
                            td { (cell(t.get(r, "creditworthiness"))) }
                            td.num { (cell(t.get(r, "unconverted_amounts"))) }
                        }
                    }
                }
            }
        }
    }
}

/// The ratio, or why there is none.
fn ratio(t: &TextTable, row: usize) -> String {
    match t.get(row, "deposit_withdrawal_ratio") {
        Some(value) => money(value),
        None if t
            .get(row, "deposits_sgd")
            .is_some_and(|d| d.trim_start_matches(['0', '.']).is_empty()) =>
        {
            "no activity".to_string()
        }
        None => "∞ (no withdrawals)".to_string(),
    }
}

fn exposure(report: &CreditReport) -> Markup {
    let t = &report.exposure;
    let base = &report.base_currency;
    let rows: Vec<(String, String, String)> = (0..t.len())
        .map(|r| {
            (
                cell(t.get(r, "currency")),
                cell(t.get(r, "deposits_sgd")),
                cell(t.get(r, "withdrawals_sgd")),
            )
        })
        .collect();
    html! {
        section #exposure {
            h2 { "Currency exposure" }
            p.note { "Deposits and withdrawals per currency, converted to " (base) " (" code { "fxpipe report currency-exposure" } ")." }
            div.row {
                (svg::paired_bars(&format!("Deposits and withdrawals by currency, in {base}"), &rows))
                table #exposure-table {
                    thead { tr {
                        th { "Currency" } th.num { "Deposits (" (base) ")" } th.num { "Withdrawals (" (base) ")" }
                        th.num { "Net (" (base) ")" } th.num { "Unconverted" }
                    } }
                    tbody {
                        @for r in 0..t.len() {
                            tr {
                                td { (cell(t.get(r, "currency"))) }
                                td.num { (money(&cell(t.get(r, "deposits_sgd")))) }
                                td.num { (money(&cell(t.get(r, "withdrawals_sgd")))) }
                                td.num { (money(&cell(t.get(r, "net_sgd")))) }
                                td.num { (cell(t.get(r, "unconverted"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn history(report: &CreditReport) -> Markup {
    let t = &report.history;
    let base = &report.base_currency;
    // Rows come grouped by account, most active first.
    let mut accounts: Vec<(String, Vec<MonthPoint>, String)> = Vec::new();
    for r in 0..t.len() {
        let account = cell(t.get(r, "account_no"));
        if accounts.last().map(|(a, _, _)| a) != Some(&account) {
            accounts.push((account.clone(), Vec::new(), String::new()));
        }
        if let Some((_, points, unconverted)) = accounts.last_mut() {
            points.push(MonthPoint {
                month: format!("{}-{:0>2}", cell(t.get(r, "year")), cell(t.get(r, "month"))),
                net: cell(t.get(r, "net_sgd")),
                balance: cell(t.get(r, "running_balance_sgd")),
            });
            *unconverted = cell(t.get(r, "unconverted_to_date"));
        }
    }
    let shown = accounts.len();
    html! {
        section #history {
            h2 { "Monthly net flow and running balance" }
            p.note #history-note {
                "Per account and month (of the transaction date), in " (base) ": bars are the month's net flow (deposits − withdrawals), "
                "the line the running balance (" code { "fxpipe report balance-history" } "). "
                @if report.accounts > shown {
                    "Only the " (shown) " most active of the " (report.accounts) " accounts are charted (at most " (CHARTED_ACCOUNTS) "); "
                    code { "fxpipe report monthly-flows" } " and " code { "balance-history" } " list them all."
                } @else {
                    "All " (shown) " accounts are charted."
                }
            }
            div.charts {
                @for (account, points, unconverted) in &accounts {
                    figure.account data-account=(account) {
                        figcaption {
                            "Account " (account) " · balance " (money(&points.last().map(|p| p.balance.clone()).unwrap_or_default())) " " (base)
                            @if unconverted != "0" { " · " span.bad { "unconverted amounts: " (unconverted) } }
                        }
                        (svg::flow_and_balance(&format!("Account {account}: monthly net flow and running balance in {base}"), points))
                    }
                }
            }
        }
    }
}

fn reconciliation(report: &CreditReport) -> Markup {
    let rec = &report.reconciliation;
    html! {
        section #reconciliation {
            h2 { "Reconciliation" }
            @match &rec.loads {
                Some(loads) if !loads.is_empty() => {
                    @let read = loads.get(0, "rows_read").unwrap_or("0");
                    @let loaded = loads.get(0, "rows_loaded").unwrap_or("0");
                    @let rejected = loads.get(0, "rows_rejected").unwrap_or("0");
                    @let adds_up = read.parse::<u64>().ok() == loaded.parse::<u64>().ok().zip(rejected.parse::<u64>().ok()).map(|(l, r)| l + r);
                    p #load-totals {
                        "Loaded files: " (cell(loads.get(0, "files"))) ". Rows read "
                        strong data-count="read" { (read) } " = loaded " strong data-count="loaded" { (loaded) }
                        " + rejected " strong data-count="rejected" { (rejected) } " "
                        @if adds_up { span.ok { "✓ reconciles" } } @else { span.bad { "✗ does not reconcile" } }
                        @if let Some(at) = loads.get(0, "last_loaded_at") { " · last load " (at) }
                    }
                }
                _ => p.note { "No loads table: nothing was loaded into this lake by fxpipe." }
            }
            div.row {
                div {
                    h3 { "Rejected rows by reason" }
                    @if rec.rejects.is_empty() { p.note { "No rejected rows." } } @else {
                        table #rejects {
                            thead { tr { th { "Reason" } th.num { "Rows" } } }
                            tbody { @for r in 0..rec.rejects.len() {
                                tr { td { (cell(rec.rejects.get(r, "reason"))) } td.num { (cell(rec.rejects.get(r, "rows_rejected"))) } }
                            } }
                        }
                    }
                }
                div {
                    h3 { "Unconverted amounts by currency" }
                    @if rec.unconverted.is_empty() { p.note { "Every amount was converted." } } @else {
                        table #unconverted {
                            thead { tr { th { "Currency" } th.num { "Amounts" } th.num { "Total (in that currency)" } } }
                            tbody { @for r in 0..rec.unconverted.len() {
                                tr {
                                    td { (cell(rec.unconverted.get(r, "currency"))) }
                                    td.num { (cell(rec.unconverted.get(r, "amounts"))) }
                                    td.num { (money(&cell(rec.unconverted.get(r, "total")))) }
                                }
                            } }
                        }
                    }
                }
                div {
                    h3 { "Last job runs" }
                    @if rec.last_jobs.is_empty() { p.note { "No job reports in _reports/." } }
                    @for run in &rec.last_jobs {
                        p { strong { (run.job) } " · " code { (run.file) } }
                        table.job {
                            tbody { @for (name, value) in &run.facts { tr { td { (name) } td.num { (value) } } } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::money;

    #[test]
    fn money_groups_thousands_and_keeps_every_decimal() {
        assert_eq!(money("1360124.87"), "1,360,124.87");
        assert_eq!(money("-1333454.82"), "-1,333,454.82");
        assert_eq!(money("41194.2600"), "41,194.2600");
        assert_eq!(money("999.5"), "999.5");
        assert_eq!(money("1000"), "1,000");
        assert_eq!(money("0.00"), "0.00");
        assert_eq!(money("—"), "—");
    }

    #[test]
    fn data_is_escaped() {
        let shown = maud::html! { td { ("<script>alert('x')</script>&") } }.into_string();
        assert_eq!(
            shown,
            "<td>&lt;script&gt;alert('x')&lt;/script&gt;&amp;</td>"
        );
    }
}
