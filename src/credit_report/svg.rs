//! The page's charts, as inline SVG built by hand: three shapes (bars, paired bars, bars with a
//! line) need no plotting crate, no font files and nothing fetched at view time.
//!
//! Values arrive as the engine's exact text and are parsed to `f64` only to place shapes; every
//! number printed on a chart is the exact text, grouped by [`super::html::money`]. Labels are
//! data (account numbers, currency codes) and maud escapes them.

use maud::{html, Markup};

use super::html::money;

/// Colours that read on screen and in grey print.
const DEPOSIT: &str = "#2e7d32";
const WITHDRAWAL: &str = "#c62828";
const BAR: &str = "#1565c0";
const LINE: &str = "#ef6c00";
const AXIS: &str = "#555";

/// Width of every chart, in CSS pixels; the page lays them out in a grid.
const WIDTH: f64 = 560.0;
/// Left gutter for labels.
const LABEL: f64 = 190.0;

fn number(text: &str) -> f64 {
    text.parse().unwrap_or(0.0)
}

/// Rounds a coordinate so the SVG text stays short.
fn at(value: f64) -> String {
    format!("{:.1}", value)
}

/// One horizontal bar per row: `(label, value text)`, scaled to the largest.
pub fn bars(title: &str, rows: &[(String, String)]) -> Markup {
    let row_height = 28.0;
    let height = 16.0 + row_height * rows.len().max(1) as f64;
    let largest = rows
        .iter()
        .map(|(_, v)| number(v).abs())
        .fold(0.0, f64::max);
    let span = WIDTH - LABEL - 90.0;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label=(title)
            width=(WIDTH) height=(height) viewBox=(format!("0 0 {WIDTH} {height}")) {
            title { (title) }
            @for (i, (label, value)) in rows.iter().enumerate() {
                @let y = 8.0 + row_height * i as f64;
                @let length = if largest > 0.0 { span * number(value).abs() / largest } else { 0.0 };
                text x=(at(LABEL - 8.0)) y=(at(y + 15.0)) text-anchor="end" { (label) }
                rect x=(LABEL) y=(at(y)) width=(at(length.max(1.0))) height="20" fill=(BAR) {}
                text x=(at(LABEL + length + 6.0)) y=(at(y + 15.0)) { (money(value)) }
            }
        }
    }
}

/// Two bars per row, deposits over withdrawals: `(label, deposits text, withdrawals text)`,
/// both on one scale.
pub fn paired_bars(title: &str, rows: &[(String, String, String)]) -> Markup {
    let row_height = 40.0;
    let height = 40.0 + row_height * rows.len().max(1) as f64;
    let largest = rows
        .iter()
        .flat_map(|(_, d, w)| [number(d).abs(), number(w).abs()])
        .fold(0.0, f64::max);
    let span = WIDTH - LABEL - 110.0;
    let scale = |v: &str| {
        if largest > 0.0 {
            (span * number(v).abs() / largest).max(1.0)
        } else {
            1.0
        }
    };
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label=(title)
            width=(WIDTH) height=(height) viewBox=(format!("0 0 {WIDTH} {height}")) {
            title { (title) }
            rect x=(LABEL) y="6" width="12" height="12" fill=(DEPOSIT) {}
            text x=(LABEL + 18.0) y="16" { "deposits" }
            rect x=(LABEL + 100.0) y="6" width="12" height="12" fill=(WITHDRAWAL) {}
            text x=(LABEL + 118.0) y="16" { "withdrawals" }
            @for (i, (label, deposits, withdrawals)) in rows.iter().enumerate() {
                @let y = 32.0 + row_height * i as f64;
                text x=(at(LABEL - 8.0)) y=(at(y + 20.0)) text-anchor="end" { (label) }
                rect x=(LABEL) y=(at(y)) width=(at(scale(deposits))) height="15" fill=(DEPOSIT) {}
                text x=(at(LABEL + scale(deposits) + 6.0)) y=(at(y + 12.0)) class="small" { (money(deposits)) }
                rect x=(LABEL) y=(at(y + 17.0)) width=(at(scale(withdrawals))) height="15" fill=(WITHDRAWAL) {}
                text x=(at(LABEL + scale(withdrawals) + 6.0)) y=(at(y + 29.0)) class="small" { (money(withdrawals)) }
            }
        }
    }
}

/// One point of an account's history: the month's label, its net flow and the running balance
/// after it (exact text).
pub struct MonthPoint {
    pub month: String,
    pub net: String,
    pub balance: String,
}

/// An account's months: the net flow as bars around zero, the running balance as a line, on
/// one scale (both are amounts in the base currency).
pub fn flow_and_balance(title: &str, points: &[MonthPoint]) -> Markup {
    let (width, height) = (WIDTH, 240.0);
    let (left, right, top, bottom) = (78.0, 12.0, 14.0, 40.0);
    let values: Vec<f64> = points
        .iter()
        .flat_map(|p| [number(&p.net), number(&p.balance)])
        .collect();
    let high = values.iter().copied().fold(0.0, f64::max);
    let low = values.iter().copied().fold(0.0, f64::min);
    let range = if high > low { high - low } else { 1.0 };
    let plot_height = height - top - bottom;
    let y = |v: f64| top + plot_height * (high - v) / range;
    let slot = (width - left - right) / points.len().max(1) as f64;
    let x = |i: usize| left + slot * (i as f64 + 0.5);
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{},{}", at(x(i)), at(y(number(&p.balance)))))
        .collect();
    // A month label under every bar would overlap past a year: about eight are shown.
    let label_every = points.len().div_ceil(8).max(1);
    let zero = y(0.0);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label=(title)
            width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) {
            title { (title) }
            text x=(at(left - 6.0)) y=(at(y(high) + 4.0)) text-anchor="end" class="small" { (money(&format!("{high:.0}"))) }
            // Axis labels closer than a line of text to another are left out.
            @if (y(high) - zero).abs() > 12.0 && (low >= 0.0 || (y(low) - zero).abs() > 12.0) {
                text x=(at(left - 6.0)) y=(at(zero + 4.0)) text-anchor="end" class="small" { "0" }
            }
            @if low < 0.0 {
                text x=(at(left - 6.0)) y=(at(y(low) + 4.0)) text-anchor="end" class="small" { (money(&format!("{low:.0}"))) }
            }
            line x1=(left) x2=(width - right) y1=(at(zero)) y2=(at(zero)) stroke=(AXIS) stroke-width="1" {}
            @for (i, p) in points.iter().enumerate() {
                @let v = y(number(&p.net));
                rect x=(at(x(i) - slot * 0.35)) y=(at(v.min(zero))) width=(at(slot * 0.7))
                    height=(at((v - zero).abs().max(0.5))) fill=(BAR) opacity="0.75" {
                    title { (p.month) ": net " (money(&p.net)) ", balance " (money(&p.balance)) }
                }
                @if i % label_every == 0 {
                    text x=(at(x(i))) y=(at(height - bottom + 16.0)) text-anchor="middle" class="small" { (p.month) }
                }
            }
            polyline points=(line.join(" ")) fill="none" stroke=(LINE) stroke-width="2.5" {}
            @for (i, p) in points.iter().enumerate() {
                circle cx=(at(x(i))) cy=(at(y(number(&p.balance)))) r="3" fill=(LINE) {}
            }
            rect x=(left) y=(at(height - 16.0)) width="12" height="10" fill=(BAR) opacity="0.75" {}
            text x=(left + 16.0) y=(at(height - 7.0)) class="small" { "net flow in the month" }
            rect x=(left + 170.0) y=(at(height - 14.0)) width="14" height="4" fill=(LINE) {}
            text x=(left + 190.0) y=(at(height - 7.0)) class="small" { "running balance" }
        }
    }
}
