//! The European Central Bank's euro reference rates as a [`RateSource`]: real daily rates for
//! users without an Open Exchange Rates key.
//!
//! The ECB publishes units of ~30 currencies per 1 EUR on TARGET business days, around 16:00
//! CET. One document holds many days: `eurofxref-hist.zip` (a ZIP with `eurofxref-hist.csv`,
//! every day since 1999), the CSV itself, or the XML feeds `eurofxref-daily.xml`,
//! `eurofxref-hist-90d.xml` and `eurofxref-hist.xml`. The kind is told from the content (ZIP
//! magic, `<`, else CSV), so a renamed download still reads. The document is fetched once per
//! source and every date is looked up in it: a backfill of years costs one request.
//!
//! The rates table is USD based, so each day is converted exactly, with one rounding to
//! 18 decimals (half away from zero): units of X per USD = X per EUR ÷ USD per EUR, EUR per USD
//! = 1 ÷ USD per EUR, USD = 1. A day without a USD quote cannot be converted and is an error;
//! a day the ECB did not publish is [`FetchError::not_published`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read};

use chrono::{NaiveDate, NaiveTime};
use quick_xml::events::{BytesStart, Event};
use tokio::sync::OnceCell;
use tracing::info;

use super::oer::DailyRates;
use super::source::{FetchError, RateSource};
use crate::money::{self, RATE_SCALE};

/// The full history since 1999, updated every business day (~600 kB zipped).
pub const DEFAULT_URL: &str = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip";

/// Largest CSV read out of a ZIP. The full history is ~1.5 MB unzipped; the cap keeps a
/// corrupt or hostile archive from filling memory.
const MAX_CSV_BYTES: u64 = 64 << 20;

/// Seconds after midnight UTC stamped on a day's rates: the ECB publishes around 16:00 CET.
const PUBLISHED_AT_SECONDS: i64 = 15 * 3600;

/// One unit at [`RATE_SCALE`].
const ONE: i128 = 1_000_000_000_000_000_000;

/// The ECB's reference rates from one document (URL or `file://PATH`).
///
/// The document is read once and kept: a source is for one run. A long-lived process (the
/// daemon) must build a new source per run, or days published after the first download stay
/// "not published".
pub struct EcbSource {
    url: String,
    client: reqwest::Client,
    /// Set by the first successful download; a failed one is retried by the next fetch, so a
    /// caller's retry of a transient error is not answered from a cached failure.
    document: OnceCell<Document>,
}

impl std::fmt::Debug for EcbSource {
    // Not the document: a Debug of the source must not print 6,000 days of quotes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcbSource")
            .field("url", &self.url)
            .field("loaded", &self.document.initialized())
            .finish()
    }
}

impl EcbSource {
    /// A source reading `url` with `client` (whose timeouts bound the one download).
    /// Refuses a URL with credentials or a query, as `--oxr-url` does: a URL ends up in logs
    /// and in `rates_errors` rows.
    pub fn new(url: String, client: reqwest::Client) -> Result<Self, String> {
        let parsed = url::Url::parse(&url).map_err(|e| format!("--ecb-url {url:?}: {e}"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some()
        {
            return Err(
                "--ecb-url must not carry credentials or a query (it is logged and recorded in rates_errors)"
                    .to_string(),
            );
        }
        Ok(Self {
            url,
            client,
            document: OnceCell::new(),
        })
    }

    async fn document(&self) -> Result<&Document, FetchError> {
        self.document
            .get_or_try_init(|| async {
                let bytes = self.download().await?;
                let document = Document::parse(&bytes).map_err(|why| {
                    FetchError::new(0, "invalid_document", format!("{}: {why}", self.url))
                })?;
                info!(
                    url = %self.url,
                    bytes = bytes.len(),
                    days = document.days.len(),
                    "ECB reference rates loaded"
                );
                Ok(document)
            })
            .await
    }

    async fn download(&self) -> Result<Vec<u8>, FetchError> {
        let failed = |status: i32, why: String| FetchError::new(status, "download_failed", why);
        if let Some(path) = self.url.strip_prefix("file://") {
            return tokio::fs::read(path)
                .await
                .map_err(|e| failed(0, format!("cannot read {path}: {e}")));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(FetchError::new(
                0,
                "unsupported_url",
                format!(
                    "{}: the ECB source reads http://, https:// or file:// URLs",
                    self.url
                ),
            ));
        }
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| failed(0, format!("GET {}: {}", self.url, causes(e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(
                i32::from(status.as_u16()),
                format!("GET {} answered {status}", self.url),
            ));
        }
        let body = response.bytes().await.map_err(|e| {
            failed(
                0,
                format!("GET {}: reading the body: {}", self.url, causes(e)),
            )
        })?;
        Ok(body.to_vec())
    }
}

/// A reqwest error with its causes ("error sending request: connection refused"); reqwest's
/// own Display stops at the first. The URL is left out: the caller names it.
fn causes(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait::async_trait]
impl RateSource for EcbSource {
    async fn fetch(&self, date: NaiveDate) -> Result<DailyRates, FetchError> {
        let document = self.document().await?;
        match document.days.get(&date) {
            Some(quotes) => to_usd_base(date, quotes, &self.url),
            None => {
                let covers = match (document.days.keys().next(), document.days.keys().last()) {
                    (Some(first), Some(last)) => format!("it covers {first} to {last}"),
                    _ => "it holds no days".to_string(),
                };
                Err(FetchError::not_published(format!(
                    "{} has no rates for {date} (a {}): the ECB publishes on TARGET business \
                     days only, and {covers}",
                    self.url,
                    date.format("%A"),
                )))
            }
        }
    }

    fn describe(&self) -> String {
        format!("ecb:{}", self.url)
    }
}

/// The day's one USD quote (units per 1 EUR): without it, no rate of the day can be
/// expressed per USD.
fn usd_per_eur(
    date: NaiveDate,
    quotes: &[(String, String)],
    url: &str,
) -> Result<i128, FetchError> {
    let missing = |detail: String| FetchError::new(0, "base_currency_missing", detail);
    let usd_quotes: Vec<&str> = quotes
        .iter()
        .filter(|(code, _)| code == "USD")
        .map(|(_, text)| text.as_str())
        .collect();
    match usd_quotes.as_slice() {
        [text] => match money::parse_scaled(text, RATE_SCALE) {
            Ok(value) if value > 0 => Ok(value),
            _ => Err(missing(format!(
                "{url}: the USD rate on {date} is {text:?}, not a positive decimal, so no rate \
                 of that day can be expressed per USD"
            ))),
        },
        [] => Err(missing(format!(
            "{url}: no USD rate on {date}, so no rate of that day can be expressed per USD"
        ))),
        _ => Err(missing(format!(
            "{url}: USD is quoted {} times on {date}",
            usd_quotes.len()
        ))),
    }
}

/// Converts one day's quotes (units per 1 EUR) to units per 1 USD.
fn to_usd_base(
    date: NaiveDate,
    quotes: &[(String, String)],
    url: &str,
) -> Result<DailyRates, FetchError> {
    let usd_per_eur = usd_per_eur(date, quotes, url)?;
    let per_usd = |per_eur: i128| {
        money::convert_to_scale(
            (1, 0),
            (per_eur, RATE_SCALE),
            (usd_per_eur, RATE_SCALE),
            RATE_SCALE,
        )
    };
    let mut rates = BTreeMap::from([("USD".to_string(), ONE)]);
    let mut invalid = Vec::new();
    match per_usd(ONE) {
        Some(eur) => {
            rates.insert("EUR".to_string(), eur);
        }
        None => invalid.push(("EUR".to_string(), "1 / USD is out of range".to_string())),
    }
    let mut seen = BTreeSet::new();
    let mut twice = BTreeSet::new();
    for (code, text) in quotes {
        if code == "USD" {
            continue;
        }
        if code == "EUR" {
            invalid.push((code.clone(), "EUR is the ECB's base, not a quote".into()));
            continue;
        }
        if !seen.insert(code.as_str()) {
            twice.insert(code.as_str());
            continue;
        }
        match money::parse_scaled(text, RATE_SCALE) {
            Ok(value) if value > 0 => match per_usd(value) {
                Some(rate) => {
                    rates.insert(code.clone(), rate);
                }
                None => invalid.push((code.clone(), format!("{text} per EUR is out of range"))),
            },
            Ok(_) => invalid.push((code.clone(), format!("{text} is not a positive rate"))),
            Err(e) => invalid.push((code.clone(), e.to_string())),
        }
    }
    // A code quoted twice has no single value: the day is refused, as for any source.
    for code in &twice {
        rates.remove(*code);
    }
    Ok(DailyRates {
        base: "USD".to_string(),
        timestamp: date.and_time(NaiveTime::MIN).and_utc().timestamp() + PUBLISHED_AT_SECONDS,
        rates,
        invalid,
        duplicates: twice.into_iter().map(str::to_string).collect(),
    })
}

/// Why a downloaded document could not be read.
#[derive(Debug, thiserror::Error)]
enum DocumentError {
    #[error("not a readable ZIP: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("the ZIP holds no .csv file")]
    NoCsvInZip,
    #[error("reading {name} from the ZIP: {source}")]
    ZipEntry {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} in the ZIP is larger than {MAX_CSV_BYTES} bytes")]
    TooLarge { name: String },
    #[error("not UTF-8 text, a ZIP or XML")]
    NotText,
    #[error("line {line}: {source}")]
    Csv { line: u64, source: csv::Error },
    #[error(
        "the CSV's first column is {0:?}, not Date (expected the ECB's Date,USD,JPY,... header)"
    )]
    NoDateColumn(String),
    #[error("line {line}: {text:?} is not a date (YYYY-MM-DD or DD Month YYYY)")]
    BadDate { line: u64, text: String },
    #[error("{0} appears twice")]
    DuplicateDate(NaiveDate),
    #[error("XML at byte {position}: {why}")]
    Xml { position: u64, why: String },
    #[error("XML at byte {0}: a currency Cube outside a Cube with a time")]
    RateOutsideDay(u64),
    #[error("no days of rates in it")]
    NoDays,
}

/// Every day of one document: (currency, rate text) as published, units per 1 EUR.
#[derive(Debug, Default)]
struct Document {
    days: BTreeMap<NaiveDate, Vec<(String, String)>>,
}

impl Document {
    fn parse(bytes: &[u8]) -> Result<Self, DocumentError> {
        let document = if bytes.starts_with(b"PK") {
            Self::parse_text(&csv_from_zip(bytes)?)?
        } else {
            Self::parse_text(bytes)?
        };
        if document.days.is_empty() {
            return Err(DocumentError::NoDays);
        }
        Ok(document)
    }

    fn parse_text(bytes: &[u8]) -> Result<Self, DocumentError> {
        let text = std::str::from_utf8(bytes).map_err(|_| DocumentError::NotText)?;
        let text = text.trim_start_matches('\u{feff}').trim_start();
        if text.starts_with('<') {
            Self::parse_xml(text)
        } else {
            Self::parse_csv(text)
        }
    }

    /// `Date,USD,JPY,...,` then one line per day, newest first; `N/A` (or nothing) where a
    /// currency was not quoted that day. The hist CSV ends every line with a comma; the daily
    /// one (`eurofxref.csv`) separates with `, ` and writes dates as `01 March 2024`.
    fn parse_csv(text: &str) -> Result<Self, DocumentError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut codes: Option<Vec<String>> = None;
        let mut document = Self::default();
        for record in reader.records() {
            let record = record.map_err(|source| DocumentError::Csv {
                line: source.position().map_or(0, |p| p.line()),
                source,
            })?;
            let line = record.position().map_or(0, |p| p.line());
            if record.iter().all(str::is_empty) {
                continue;
            }
            let Some(codes) = &codes else {
                let first = record.get(0).unwrap_or_default();
                if !first.eq_ignore_ascii_case("date") {
                    return Err(DocumentError::NoDateColumn(first.to_string()));
                }
                codes = Some(record.iter().map(|c| c.to_ascii_uppercase()).collect());
                continue;
            };
            let date_text = record.get(0).unwrap_or_default();
            let date = NaiveDate::parse_from_str(date_text, "%Y-%m-%d")
                .or_else(|_| NaiveDate::parse_from_str(date_text, "%d %B %Y"))
                .map_err(|_| DocumentError::BadDate {
                    line,
                    text: date_text.to_string(),
                })?;
            let quotes = codes
                .iter()
                .zip(record.iter())
                .skip(1)
                .filter(|(code, text)| {
                    !code.is_empty() && !text.is_empty() && !text.eq_ignore_ascii_case("N/A")
                })
                .map(|(code, text)| (code.clone(), text.to_string()))
                .collect();
            document.insert(date, quotes)?;
        }
        Ok(document)
    }

    /// A gesmes Envelope: `<Cube time="YYYY-MM-DD">` per day, holding
    /// `<Cube currency="USD" rate="1.0830"/>` per currency.
    fn parse_xml(text: &str) -> Result<Self, DocumentError> {
        let mut reader = quick_xml::Reader::from_str(text);
        let mut document = Self::default();
        // For each open Cube element: whether it is a day's.
        let mut open = Vec::new();
        let mut day: Option<NaiveDate> = None;
        // Elements open at the end mean a truncated download (quick-xml accepts it).
        let mut depth = 0usize;
        loop {
            let position = reader.buffer_position();
            let xml_error = |why: String| DocumentError::Xml { position, why };
            let event = reader.read_event().map_err(|e| xml_error(e.to_string()))?;
            let (element, is_start) = match &event {
                Event::Start(e) => {
                    depth += 1;
                    (e, true)
                }
                Event::Empty(e) => (e, false),
                Event::End(e) => {
                    depth = depth.saturating_sub(1);
                    if e.local_name().as_ref() == b"Cube" && open.pop() == Some(true) {
                        day = None;
                    }
                    continue;
                }
                Event::Eof if depth > 0 => {
                    return Err(xml_error(format!(
                        "the document ends inside {depth} open elements (truncated?)"
                    )))
                }
                Event::Eof => break,
                _ => continue,
            };
            if element.local_name().as_ref() != b"Cube" {
                continue;
            }
            let cube = Cube::read(element, &reader).map_err(xml_error)?;
            if is_start {
                open.push(cube.time.is_some());
            }
            if let Some(time) = cube.time {
                let date = NaiveDate::parse_from_str(time.trim(), "%Y-%m-%d")
                    .map_err(|_| xml_error(format!("time {time:?} is not a YYYY-MM-DD date")))?;
                document.insert(date, Vec::new())?;
                if is_start {
                    day = Some(date);
                }
            } else if let Some(code) = cube.currency {
                let date = day.ok_or(DocumentError::RateOutsideDay(position))?;
                let rate = cube.rate.unwrap_or_default();
                document
                    .days
                    .entry(date)
                    .or_default()
                    .push((code.trim().to_ascii_uppercase(), rate.trim().to_string()));
            }
        }
        Ok(document)
    }

    fn insert(
        &mut self,
        date: NaiveDate,
        quotes: Vec<(String, String)>,
    ) -> Result<(), DocumentError> {
        if self.days.insert(date, quotes).is_some() {
            return Err(DocumentError::DuplicateDate(date));
        }
        Ok(())
    }
}

/// The attributes of a `Cube` element the ECB uses.
#[derive(Default)]
struct Cube {
    time: Option<String>,
    currency: Option<String>,
    rate: Option<String>,
}

impl Cube {
    fn read(element: &BytesStart, reader: &quick_xml::Reader<&[u8]>) -> Result<Self, String> {
        let mut cube = Self::default();
        for attribute in element.attributes() {
            let attribute = attribute.map_err(|e| e.to_string())?;
            let value = attribute
                .decode_and_unescape_value(reader.decoder())
                .map_err(|e| e.to_string())?
                .into_owned();
            match attribute.key.local_name().as_ref() {
                b"time" => cube.time = Some(value),
                b"currency" => cube.currency = Some(value),
                b"rate" => cube.rate = Some(value),
                _ => {}
            }
        }
        Ok(cube)
    }
}

/// The first `.csv` entry of a ZIP (the ECB's hold exactly one).
fn csv_from_zip(bytes: &[u8]) -> Result<Vec<u8>, DocumentError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))?;
    let (index, name) = (0..archive.len())
        .find_map(|i| {
            let name = archive.name_for_index(i)?.ok()?;
            name.to_ascii_lowercase()
                .ends_with(".csv")
                .then(|| (i, name.into_owned()))
        })
        .ok_or(DocumentError::NoCsvInZip)?;
    let entry = archive.by_index(index)?;
    let mut text = Vec::new();
    entry
        .take(MAX_CSV_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|source| DocumentError::ZipEntry {
            name: name.clone(),
            source,
        })?;
    if text.len() as u64 > MAX_CSV_BYTES {
        return Err(DocumentError::TooLarge { name });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use num_bigint::BigInt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The hist CSV as the ECB writes it: a trailing comma on every line, `N/A` for currencies
    /// not quoted that day (CYP after 2007). 2024-02-29 has a negative and a garbled value,
    /// 2024-02-28 no USD, 2024-02-27 spaces around its values.
    const HIST_CSV: &str = "Date,USD,JPY,BGN,CYP,GBP,ISK,\n\
        2024-03-01,1.0830,161.23,1.9558,N/A,0.85583,149.10,\n\
        2024-02-29,1.0813,162.17,1.9558,N/A,-0.85645,abc,\n\
        2024-02-28,N/A,162.00,1.9558,N/A,0.85600,149.00,\n\
        2024-02-27, 1.0820 , 161.00 ,1.9558, N/A ,0.85500,148.90,\n";

    const DAILY_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
	<gesmes:subject>Reference rates</gesmes:subject>
	<gesmes:Sender>
		<gesmes:name>European Central Bank</gesmes:name>
	</gesmes:Sender>
	<Cube>
		<Cube time='2024-03-01'>
			<Cube currency='USD' rate='1.0830'/>
			<Cube currency='JPY' rate='161.23'/>
			<Cube currency='GBP' rate='0.85583'/>
		</Cube>
	</Cube>
</gesmes:Envelope>"#;

    /// The 90-day / hist XML: many days, newest first; 2024-02-28 without USD.
    const HIST_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
<gesmes:subject>Reference rates</gesmes:subject>
<Cube>
<Cube time="2024-03-01"><Cube currency="USD" rate="1.0830"/><Cube currency="JPY" rate="161.23"/><Cube currency="ISK" rate="x"/></Cube>
<Cube time="2024-02-29"><Cube currency="USD" rate="1.0813"/><Cube currency="JPY" rate="162.17"/></Cube>
<Cube time="2024-02-28"><Cube currency="JPY" rate="162.00"/></Cube>
</Cube>
</gesmes:Envelope>"#;

    /// round(num / den × 10^18), half away from zero, on big integers: an exact reference that
    /// shares no code with `money`.
    fn reference(num: &str, den: &str) -> i128 {
        let scaled = |text: &str| -> (BigInt, u32) {
            let (int, frac) = text.split_once('.').unwrap_or((text, ""));
            (format!("{int}{frac}").parse().unwrap(), frac.len() as u32)
        };
        let ((n, a), (d, b)) = (scaled(num), scaled(den));
        let ten = BigInt::from(10);
        let numerator = n * ten.pow(b + 18);
        let denominator = d * ten.pow(a);
        let two = BigInt::from(2);
        let q = (numerator * &two + &denominator) / (denominator * two);
        q.try_into().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        format!("file://{}", path.display())
    }

    fn zipped(name: &str, text: &str) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer.start_file(name, options).unwrap();
        writer.write_all(text.as_bytes()).unwrap();
        writer.finish().unwrap().into_inner()
    }

    fn source(url: String) -> EcbSource {
        EcbSource::new(url, reqwest::Client::new()).unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn the_reference_agrees_with_hand_division() {
        // 161.23 / 1.0830 = 148.873499538319482917|82..., rounded up at the 18th decimal.
        assert_eq!(reference("161.23", "1.0830"), 148_873_499_538_319_482_918);
        assert_eq!(reference("1", "1.1"), 909_090_909_090_909_091);
    }

    #[tokio::test]
    async fn hist_csv_day_is_converted_to_usd_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let ecb = source(write(dir.path(), "eurofxref-hist.csv", HIST_CSV.as_bytes()));
        let rates = ecb.fetch(day(2024, 3, 1)).await.unwrap();
        assert_eq!(rates.base, "USD");
        // 2024-03-01T15:00:00Z
        assert_eq!(rates.timestamp, 1_709_305_200);
        assert_eq!(rates.rates["JPY"], 148_873_499_538_319_482_918);
        assert_eq!(rates.rates["EUR"], 923_361_034_164_358_264);
        assert_eq!(rates.rates["EUR"], reference("1", "1.0830"));
        assert_eq!(rates.rates["USD"], 1_000_000_000_000_000_000);
        assert_eq!(rates.rates["GBP"], reference("0.85583", "1.0830"));
        assert_eq!(rates.rates["GBP"], 790_240_073_868_882_733);
        assert_eq!(rates.rates["BGN"], reference("1.9558", "1.0830"));
        assert_eq!(rates.rates["ISK"], 137_673_130_193_905_817_175);
        // CYP is N/A: neither a rate nor an invalid value.
        assert_eq!(
            rates.rates.keys().collect::<Vec<_>>(),
            ["BGN", "EUR", "GBP", "ISK", "JPY", "USD"]
        );
        assert!(rates.invalid.is_empty(), "{:?}", rates.invalid);
        assert_eq!(ecb.describe(), format!("ecb:{}", ecb.url));
    }

    #[tokio::test]
    async fn garbled_values_are_invalid_and_spaces_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let ecb = source(write(dir.path(), "eurofxref-hist.csv", HIST_CSV.as_bytes()));
        let rates = ecb.fetch(day(2024, 2, 29)).await.unwrap();
        assert_eq!(
            rates.rates.keys().collect::<Vec<_>>(),
            ["BGN", "EUR", "JPY", "USD"]
        );
        assert_eq!(rates.rates["JPY"], reference("162.17", "1.0813"));
        assert_eq!(rates.rates["JPY"], 149_976_879_681_864_422_454);
        let codes: Vec<&str> = rates.invalid.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(codes, ["GBP", "ISK"], "{:?}", rates.invalid);
        assert!(rates.invalid[0].1.contains("not a positive rate"));

        let spaced = ecb.fetch(day(2024, 2, 27)).await.unwrap();
        assert_eq!(spaced.rates["JPY"], reference("161.00", "1.0820"));
        assert_eq!(spaced.rates["EUR"], reference("1", "1.0820"));
        assert_eq!(spaced.rates.len(), 6);
        assert!(spaced.invalid.is_empty(), "{:?}", spaced.invalid);
    }

    #[tokio::test]
    async fn the_daily_csv_with_spaced_fields_and_long_dates_reads() {
        let dir = tempfile::tempdir().unwrap();
        let daily = "Date, USD, JPY, BGN, \n01 March 2024, 1.0830, 161.23, 1.9558, \n";
        let ecb = source(write(dir.path(), "eurofxref.csv", daily.as_bytes()));
        let rates = ecb.fetch(day(2024, 3, 1)).await.unwrap();
        assert_eq!(rates.rates["JPY"], 148_873_499_538_319_482_918);
        assert_eq!(rates.rates.len(), 4);
    }

    #[tokio::test]
    async fn a_day_without_usd_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let url = write(dir.path(), "eurofxref-hist.csv", HIST_CSV.as_bytes());
        let error = source(url.clone())
            .fetch(day(2024, 2, 28))
            .await
            .unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (0, "base_currency_missing")
        );
        assert!(
            error.description.contains("2024-02-28"),
            "{}",
            error.description
        );
        assert!(error.description.contains(&url), "{}", error.description);
        assert!(!error.is_not_published());
    }

    #[tokio::test]
    async fn weekends_and_dates_outside_the_document_are_not_published() {
        let dir = tempfile::tempdir().unwrap();
        let url = write(dir.path(), "eurofxref-hist.csv", HIST_CSV.as_bytes());
        let ecb = source(url.clone());
        for date in [day(2024, 3, 2), day(2024, 3, 4), day(1998, 12, 31)] {
            let error = ecb.fetch(date).await.unwrap_err();
            assert!(error.is_not_published(), "{date}: {error:?}");
            assert_eq!(error.status, 404);
            assert!(error.description.contains(&date.to_string()));
            assert!(error.description.contains(&url));
        }
        let saturday = ecb.fetch(day(2024, 3, 2)).await.unwrap_err();
        assert!(saturday.description.contains("Saturday"));
        assert!(saturday.description.contains("2024-02-27 to 2024-03-01"));
    }

    #[tokio::test]
    async fn the_hist_zip_is_read_by_its_content_not_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = zipped("eurofxref-hist.csv", HIST_CSV);
        assert!(bytes.starts_with(b"PK"));
        let ecb = source(write(dir.path(), "download", &bytes));
        let rates = ecb.fetch(day(2024, 3, 1)).await.unwrap();
        assert_eq!(rates.rates["JPY"], 148_873_499_538_319_482_918);
        assert_eq!(rates.rates.len(), 6);
        assert!(ecb
            .fetch(day(2024, 3, 2))
            .await
            .unwrap_err()
            .is_not_published());
    }

    #[tokio::test]
    async fn the_daily_xml_reads() {
        let dir = tempfile::tempdir().unwrap();
        let ecb = source(write(
            dir.path(),
            "eurofxref-daily.xml",
            DAILY_XML.as_bytes(),
        ));
        let rates = ecb.fetch(day(2024, 3, 1)).await.unwrap();
        assert_eq!(rates.rates["JPY"], 148_873_499_538_319_482_918);
        assert_eq!(rates.rates["GBP"], 790_240_073_868_882_733);
        assert_eq!(rates.rates["EUR"], 923_361_034_164_358_264);
        assert_eq!(rates.rates.len(), 4);
        assert!(ecb
            .fetch(day(2024, 2, 29))
            .await
            .unwrap_err()
            .is_not_published());
    }

    #[tokio::test]
    async fn the_multi_day_xml_reads_each_day() {
        let dir = tempfile::tempdir().unwrap();
        let ecb = source(write(
            dir.path(),
            "eurofxref-hist-90d.xml",
            HIST_XML.as_bytes(),
        ));
        let first = ecb.fetch(day(2024, 3, 1)).await.unwrap();
        assert_eq!(first.rates["JPY"], 148_873_499_538_319_482_918);
        assert_eq!(first.invalid.len(), 1, "{:?}", first.invalid);
        assert_eq!(first.invalid[0].0, "ISK");
        let second = ecb.fetch(day(2024, 2, 29)).await.unwrap();
        assert_eq!(second.rates["JPY"], 149_976_879_681_864_422_454);
        assert_eq!(second.rates["EUR"], 924_812_725_423_101_822);
        let error = ecb.fetch(day(2024, 2, 28)).await.unwrap_err();
        assert_eq!(error.message, "base_currency_missing");
        assert!(ecb
            .fetch(day(2024, 2, 25))
            .await
            .unwrap_err()
            .is_not_published());
    }

    #[tokio::test]
    async fn unreadable_documents_are_fetch_errors() {
        let dir = tempfile::tempdir().unwrap();
        let garbage: [(&str, &[u8]); 8] = [
            ("empty", b""),
            ("binary", &[0xff, 0xfe, 0x00, 0x80, 0x81]),
            ("truncated.zip", b"PK\x03\x04 not really a zip"),
            ("html", b"<html><body>Service unavailable</body></html>"),
            ("text", b"hello world\n1,2,3\n"),
            ("baddate.csv", b"Date,USD,\nyesterday,1.08,\n"),
            (
                "broken.xml",
                b"<Cube><Cube time='2024-03-01'><Cube currency='USD' rate='1.1'></Cube>",
            ),
            (
                "twice.csv",
                b"Date,USD,\n2024-03-01,1.08,\n2024-03-01,1.09,\n",
            ),
        ];
        for (name, bytes) in garbage {
            let url = write(dir.path(), name, bytes);
            let error = source(url.clone())
                .fetch(day(2024, 3, 1))
                .await
                .unwrap_err();
            assert_eq!(
                (error.status, error.message.as_str()),
                (0, "invalid_document"),
                "{name}: {error:?}"
            );
            assert!(error.description.starts_with(&url), "{name}: {error:?}");
        }
        let zip_without_csv = zipped("readme.txt", HIST_CSV);
        let url = write(dir.path(), "nocsv.zip", &zip_without_csv);
        let error = source(url).fetch(day(2024, 3, 1)).await.unwrap_err();
        assert!(error.description.contains("no .csv"), "{error:?}");

        let missing = format!("file://{}", dir.path().join("absent.zip").display());
        let error = source(missing).fetch(day(2024, 3, 1)).await.unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (0, "download_failed")
        );
        let error = source("ftp://example.org/x.zip".into())
            .fetch(day(2024, 3, 1))
            .await
            .unwrap_err();
        assert_eq!(error.message, "unsupported_url");
    }

    /// Serves `body` on `/eurofxref-hist.zip` and 404 elsewhere, one response per connection,
    /// counting requests.
    async fn serve(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let found = request.starts_with(b"GET /eurofxref-hist.zip ");
                    let (status, body) = if found {
                        ("200 OK", body)
                    } else {
                        ("404 Not Found", b"not here".to_vec())
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/zip\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (format!("http://{address}"), requests)
    }

    #[tokio::test]
    async fn over_http_the_document_is_downloaded_once() {
        let (base, requests) = serve(zipped("eurofxref-hist.csv", HIST_CSV)).await;
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let ecb = EcbSource::new(format!("{base}/eurofxref-hist.zip"), client.clone()).unwrap();
        let (first, second) = tokio::join!(ecb.fetch(day(2024, 3, 1)), ecb.fetch(day(2024, 2, 29)));
        assert_eq!(first.unwrap().rates["JPY"], 148_873_499_538_319_482_918);
        assert_eq!(second.unwrap().rates["JPY"], 149_976_879_681_864_422_454);
        assert!(ecb
            .fetch(day(2024, 3, 2))
            .await
            .unwrap_err()
            .is_not_published());
        assert_eq!(requests.load(Ordering::SeqCst), 1);

        // A download refused by the server is the server's status, not a day without rates.
        let wrong = EcbSource::new(format!("{base}/eurofxref-hist.ZIP"), client).unwrap();
        let error = wrong.fetch(day(2024, 3, 1)).await.unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (404, "download_failed")
        );
        assert!(!error.is_not_published());
        assert!(
            error.description.contains("/eurofxref-hist.ZIP"),
            "{error:?}"
        );

        // Nobody listening: status 0, and the description says why.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let refused = EcbSource::new(
            format!("http://{address}/eurofxref-hist.zip"),
            reqwest::Client::builder().no_proxy().build().unwrap(),
        )
        .unwrap();
        // Credentials or a query in the URL are refused before any request.
        for leaky in [
            "https://user:secret@ecb.example/eurofxref-hist.zip",
            "https://ecb.example/eurofxref-hist.zip?token=secret",
        ] {
            let Err(error) = EcbSource::new(leaky.to_string(), reqwest::Client::new()) else {
                panic!("{leaky} must be refused");
            };
            assert!(error.contains("--ecb-url must not carry"), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
        let error = refused.fetch(day(2024, 3, 1)).await.unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (0, "download_failed")
        );
        assert!(
            error.description.to_lowercase().contains("refused"),
            "{error:?}"
        );
    }
}
