//! The Open Exchange Rates response format (`historical/YYYY-MM-DD.json`).
//!
//! Rates are read from the JSON text itself (serde_json's `RawValue`), so `0.000016386633`
//! stays exactly that: a float on the way would already be a different number.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::money::{self, RATE_SCALE};

/// One day's rates: units of each currency per 1 USD, exact, scaled by 10^18.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRates {
    pub base: String,
    /// Seconds since the epoch at which the source published the rates.
    pub timestamp: i64,
    pub rates: BTreeMap<String, i128>,
    /// Codes whose value could not be read exactly, with why (the rest of the day is usable).
    pub invalid: Vec<(String, String)>,
    /// Codes the body names more than once (`SGD` and `sgd`, or `SGD` twice): which of the
    /// rates is meant cannot be known, so the day is refused.
    pub duplicates: Vec<String>,
}

/// The source's error body: `{"error": true, "status": 401, "message": "invalid_app_id", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub status: i32,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize)]
struct SuccessBody<'a> {
    #[serde(default)]
    timestamp: i64,
    #[serde(default = "usd")]
    base: String,
    #[serde(borrow)]
    rates: Pairs<'a>,
}

/// A JSON object's members in order, duplicates kept (a map would keep the last silently).
struct Pairs<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of currency codes to rates")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::new();
                while let Some((code, raw)) = map.next_entry::<String, &'de RawValue>()? {
                    pairs.push((code, raw));
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(Visit(std::marker::PhantomData))
    }
}

fn usd() -> String {
    "USD".to_string()
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    error: bool,
}

/// What a body says: rates, or the source's own error.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Rates(DailyRates),
    Error(ErrorBody),
}

/// Parses a response body; `Err` (with why) when it is neither format.
pub fn parse(body: &str) -> Result<Parsed, String> {
    let probe: Probe = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if probe.error {
        let error: ErrorBody =
            serde_json::from_str(body).map_err(|e| format!("unreadable error body: {e}"))?;
        return Ok(Parsed::Error(error));
    }
    let success: SuccessBody =
        serde_json::from_str(body).map_err(|e| format!("no rates object: {e}"))?;
    let mut rates = BTreeMap::new();
    let mut invalid = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut duplicates = Vec::new();
    for (code, raw) in success.rates.0 {
        let code = code.trim().to_ascii_uppercase();
        if !seen.insert(code.clone()) {
            duplicates.push(code);
            continue;
        }
        match money::parse_scaled(raw.get(), RATE_SCALE) {
            Ok(value) if value > 0 => {
                rates.insert(code, value);
            }
            Ok(_) => invalid.push((code, format!("{} is not a positive rate", raw.get()))),
            Err(e) => invalid.push((code, e.to_string())),
        }
    }
    Ok(Parsed::Rates(DailyRates {
        base: success.base.trim().to_ascii_uppercase(),
        timestamp: success.timestamp,
        rates,
        invalid,
        duplicates,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rates_exactly() {
        let body = r#"{"disclaimer":"x","license":"y","timestamp":1341936000,"base":"USD",
            "rates":{"SGD":1.35,"BTC":0.000016386633,"XAU":5.5e-4,"BAD":"x","ZERO":0}}"#;
        let Ok(Parsed::Rates(day)) = parse(body) else {
            panic!("rates expected")
        };
        assert_eq!(day.rates["SGD"], 1_350_000_000_000_000_000);
        assert_eq!(day.rates["BTC"], 16_386_633_000_000);
        assert_eq!(day.rates["XAU"], 550_000_000_000_000);
        assert_eq!(day.invalid.len(), 2);
        assert_eq!(day.timestamp, 1341936000);
        assert!(day.duplicates.is_empty());
    }

    #[test]
    fn a_code_named_twice_is_reported_not_overwritten() {
        let body = r#"{"timestamp":1,"base":"USD","rates":{"SGD":1.35,"EUR":0.9,"sgd":1.4}}"#;
        let Ok(Parsed::Rates(day)) = parse(body) else {
            panic!("rates expected")
        };
        assert_eq!(day.duplicates, vec!["SGD".to_string()]);
        assert_eq!(day.rates["SGD"], 1_350_000_000_000_000_000);
    }

    #[test]
    fn reads_error_bodies() {
        let body = r#"{"error":true,"status":401,"message":"invalid_app_id","description":"Invalid App ID"}"#;
        assert_eq!(
            parse(body),
            Ok(Parsed::Error(ErrorBody {
                status: 401,
                message: "invalid_app_id".into(),
                description: "Invalid App ID".into()
            }))
        );
        assert!(parse("<html>").is_err());
    }
}
