//! CSV records with bounds: one malformed quote cannot swallow a file, and no record is held in
//! memory beyond a fixed size, whatever the input.
//!
//! csv-core tokenises, as in the `csv` crate and arrow. This reader owns the input buffer, so
//! that when a record breaks a limit, or its quoting is broken, it can give up on just the line
//! the record started on and parse again from the next line: the lines a runaway quote
//! swallowed come back as records of their own.

use std::io::{self, Read};
use std::ops::Range;

use csv_core::{ReadRecordResult, Reader as Core, ReaderBuilder as CoreBuilder};

/// A record may hold at most this many bytes of CSV text (1 MiB): far beyond any real bank
/// row, small enough to keep in memory.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// A record may span at most this many lines: a quoted field may contain line breaks, but a
/// hundred of them in one row is a quote that was never closed.
pub const MAX_RECORD_LINES: u64 = 100;
/// At most this many bytes of a given-up line are kept for the rejects table.
pub const RAW_BYTES: usize = 4096;

/// Bytes read from the input at a time.
const CHUNK: usize = 1 << 20;

/// The limits one record must keep (the defaults are [`MAX_RECORD_BYTES`] and
/// [`MAX_RECORD_LINES`]; tests use small ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_lines: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_RECORD_BYTES,
            max_lines: MAX_RECORD_LINES,
        }
    }
}

/// One record's fields, unquoted, and the line it starts on.
#[derive(Debug, Clone, Default)]
pub struct Record {
    data: Vec<u8>,
    ends: Vec<usize>,
    fields: usize,
    line: u64,
}

impl Record {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields == 0
    }

    /// The line the record starts on (the first line of the input is 1).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Where field `index` lies in [`Record::as_slice`].
    pub fn range(&self, index: usize) -> Option<Range<usize>> {
        if index >= self.fields {
            return None;
        }
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        Some(start..self.ends[index])
    }

    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.range(index).map(|r| &self.data[r])
    }

    /// Every field's bytes, one after the other.
    pub fn as_slice(&self) -> &[u8] {
        match self.fields {
            0 => &[],
            n => &self.data[..self.ends[n - 1]],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.fields).filter_map(|i| self.get(i))
    }
}

/// Why a record was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runaway {
    /// More than the byte limit.
    TooManyBytes,
    /// More than the line limit.
    TooManyLines,
    /// A quote opened in the record is still open at the end of the input.
    QuoteNeverClosed,
    /// A quoted field runs over a line break and its closing quote is followed by more text
    /// (`"unterminated,…⏎…,"1,000"`): the quote that closed it opened another field.
    QuoteClosedInsideAField,
}

/// A record given up: only its first line is consumed, the next read starts on the line after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenUp {
    pub why: Runaway,
    pub first_line: u64,
    /// The last line looked at: where the record (or the input) ended, or where a limit was
    /// passed.
    pub last_line: u64,
    /// The first line's text, at most [`RAW_BYTES`] of it.
    pub raw: Vec<u8>,
    /// The first line's full length in bytes.
    pub line_bytes: u64,
}

/// What one read produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The record passed in now holds the next record.
    Record,
    /// The record starting on this line was given up.
    GivenUp(GivenUp),
    /// The input has no more records.
    End,
}

/// Reads CSV records from any input, within [`Limits`].
///
/// Memory is the buffer (the byte limit plus one read), and one record's fields.
pub struct RecordReader<R> {
    input: R,
    core: Core,
    delimiter: u8,
    limits: Limits,
    buf: Vec<u8>,
    /// Start of the current record (everything before it is consumed).
    start: usize,
    /// End of the bytes read into `buf`.
    end: usize,
    eof: bool,
    /// The line `buf[start]` is on.
    line: u64,
    started: bool,
}

impl<R> std::fmt::Debug for RecordReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReader")
            .field("line", &self.line)
            .field("limits", &self.limits)
            .finish()
    }
}

impl<R: Read> RecordReader<R> {
    /// A reader of `,`-delimited records (see [`RecordReader::set_delimiter`]).
    pub fn new(input: R, limits: Limits) -> Self {
        Self {
            input,
            core: CoreBuilder::new().build(),
            delimiter: b',',
            limits,
            buf: vec![0; limits.max_bytes + CHUNK],
            start: 0,
            end: 0,
            eof: false,
            line: 1,
            started: false,
        }
    }

    /// The first bytes of the input, up to its first line break (or one read), without
    /// consuming them: enough to sniff the delimiter from the header line.
    pub fn head(&mut self) -> io::Result<&[u8]> {
        while !self.eof && self.end < CHUNK && !self.buf[self.start..self.end].contains(&b'\n') {
            self.fill()?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    /// Sets the field delimiter for the records read from now on.
    pub fn set_delimiter(&mut self, delimiter: u8) {
        self.delimiter = delimiter;
        self.core = CoreBuilder::new().delimiter(delimiter).build();
    }

    /// Reads the next record into `record`.
    pub fn read(&mut self, record: &mut Record) -> io::Result<Next> {
        if !self.skip_blank_lines()? {
            return Ok(Next::End);
        }
        let first_line = self.line;
        self.core.reset();
        self.core.set_line(first_line);
        if record.data.is_empty() {
            record.data.resize(1024, 0);
            record.ends.resize(16, 0);
        }
        let (mut pos, mut nout, mut nend) = (self.start, 0, 0);
        loop {
            if pos == self.end && !self.eof {
                pos -= self.fill()?;
                continue;
            }
            let (result, nin, out, ends) = self.core.read_record(
                &self.buf[pos..self.end],
                &mut record.data[nout..],
                &mut record.ends[nend..],
            );
            pos += nin;
            nout += out;
            nend += ends;
            match result {
                ReadRecordResult::Record => {
                    record.fields = nend;
                    record.line = first_line;
                    return self.finish_record(pos, first_line);
                }
                ReadRecordResult::End => return Ok(Next::End),
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let grown = record.data.len() * 2;
                    record.data.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = record.ends.len() * 2;
                    record.ends.resize(grown, 0);
                }
            }
            if pos - self.start > self.limits.max_bytes {
                let last_line = first_line + count_lines(&self.buf[self.start..pos]);
                return self.give_up(Runaway::TooManyBytes, first_line, last_line);
            }
            if self.core.line() - first_line >= self.limits.max_lines {
                let last_line = first_line + self.limits.max_lines;
                return self.give_up(Runaway::TooManyLines, first_line, last_line);
            }
        }
    }

    /// A complete record ends at `pos`: keep it, unless it breaks a limit or its quoting ran
    /// away over lines.
    fn finish_record(&mut self, pos: usize, first_line: u64) -> io::Result<Next> {
        let text = &self.buf[self.start..pos];
        // csv-core counted the record's line breaks as it went (from `first_line`).
        let newlines = self.core.line() - first_line;
        let breaks = newlines - u64::from(text.last() == Some(&b'\n'));
        let last_line = first_line + breaks;
        if text.len() > self.limits.max_bytes {
            return self.give_up(Runaway::TooManyBytes, first_line, last_line);
        }
        if breaks >= self.limits.max_lines {
            let last_line = first_line + self.limits.max_lines;
            return self.give_up(Runaway::TooManyLines, first_line, last_line);
        }
        let at_end = self.eof && pos == self.end;
        if breaks > 0 || at_end {
            if let Some(why) = broken_quoting(text, self.delimiter, breaks > 0) {
                return self.give_up(why, first_line, last_line);
            }
        }
        self.line = first_line + newlines;
        self.start = pos;
        Ok(Next::Record)
    }

    /// Gives up the record starting at `self.start`: consumes its first line only, so the next
    /// read starts on the line after it.
    fn give_up(&mut self, why: Runaway, first_line: u64, last_line: u64) -> io::Result<Next> {
        let mut raw = Vec::new();
        let mut line_bytes = 0u64;
        let mut ends_in_cr = false;
        loop {
            let rest = &self.buf[self.start..self.end];
            let newline = rest.iter().position(|b| *b == b'\n');
            let line = &rest[..newline.unwrap_or(rest.len())];
            let room = RAW_BYTES.saturating_sub(raw.len());
            raw.extend_from_slice(&line[..line.len().min(room)]);
            line_bytes += line.len() as u64;
            if let Some(last) = line.last() {
                ends_in_cr = *last == b'\r';
            }
            match newline {
                Some(at) => {
                    self.start += at + 1;
                    break;
                }
                // A first line longer than the buffer: skip to its end, a read at a time.
                None => {
                    self.start = self.end;
                    if self.eof {
                        break;
                    }
                    self.fill()?;
                }
            }
        }
        if ends_in_cr {
            line_bytes -= 1;
            if raw.len() as u64 > line_bytes {
                raw.pop();
            }
        }
        self.line = first_line + 1;
        Ok(Next::GivenUp(GivenUp {
            why,
            first_line,
            last_line,
            raw,
            line_bytes,
        }))
    }

    /// Skips a UTF-8 byte order mark at the start of the input, and the blank lines before a
    /// record (csv-core would skip them too, but then the record's first line would be
    /// unknown). `false` at the end of the input.
    fn skip_blank_lines(&mut self) -> io::Result<bool> {
        while !self.started {
            if self.end - self.start >= 3 || self.eof {
                self.started = true;
                if self.buf[self.start..self.end].starts_with(b"\xef\xbb\xbf") {
                    self.start += 3;
                }
            } else {
                self.fill()?;
            }
        }
        loop {
            if self.start == self.end {
                if self.eof {
                    return Ok(false);
                }
                self.fill()?;
                continue;
            }
            match self.buf[self.start] {
                b'\n' => self.line += 1,
                b'\r' => {}
                _ => return Ok(true),
            }
            self.start += 1;
        }
    }

    /// Moves the current record to the front of the buffer and reads more after it. Returns
    /// how far the bytes moved (positions in `buf` must subtract it).
    fn fill(&mut self) -> io::Result<usize> {
        let shift = self.start;
        if shift > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= shift;
            self.start = 0;
        }
        let room = (self.buf.len() - self.end).min(CHUNK);
        let n = loop {
            match self.input.read(&mut self.buf[self.end..self.end + room]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(shift)
    }
}

fn count_lines(text: &[u8]) -> u64 {
    text.iter().filter(|b| **b == b'\n').count() as u64
}

/// The quoting fault of a record's text, following csv-core's states (`"` quotes, `""` is an
/// escaped quote): a quote still open at the end of the text, or (when the record spans lines)
/// a closing quote followed by more field text.
fn broken_quoting(text: &[u8], delimiter: u8, spans_lines: bool) -> Option<Runaway> {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    let mut closed_inside_a_field = false;
    for &b in text {
        state = match state {
            State::FieldStart | State::Unquoted if b == delimiter => State::FieldStart,
            State::FieldStart if b == b'"' => State::Quoted,
            State::FieldStart | State::Unquoted => State::Unquoted,
            State::Quoted if b == b'"' => State::QuoteInQuoted,
            State::Quoted => State::Quoted,
            State::QuoteInQuoted if b == b'"' => State::Quoted,
            State::QuoteInQuoted if b == delimiter || b == b'\n' || b == b'\r' => State::FieldStart,
            State::QuoteInQuoted => {
                closed_inside_a_field = true;
                State::Unquoted
            }
        };
    }
    if state == State::Quoted {
        Some(Runaway::QuoteNeverClosed)
    } else if spans_lines && closed_inside_a_field {
        Some(Runaway::QuoteClosedInsideAField)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each read as (line, fields) or (first line, last line, why, raw) or the end.
    #[derive(Debug, PartialEq)]
    enum Read {
        Row(u64, Vec<String>),
        Gave(u64, u64, Runaway, String),
    }

    fn read_all(input: &[u8], limits: Limits) -> Vec<Read> {
        let mut reader = RecordReader::new(input, limits);
        let mut record = Record::default();
        let mut out = Vec::new();
        loop {
            match reader.read(&mut record).unwrap() {
                Next::Record => out.push(Read::Row(
                    record.line(),
                    record
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).to_string())
                        .collect(),
                )),
                Next::GivenUp(g) => out.push(Read::Gave(
                    g.first_line,
                    g.last_line,
                    g.why,
                    String::from_utf8_lossy(&g.raw).to_string(),
                )),
                Next::End => return out,
            }
        }
    }

    fn row(line: u64, fields: &[&str]) -> Read {
        Read::Row(line, fields.iter().map(|f| f.to_string()).collect())
    }

    #[test]
    fn records_carry_the_line_they_start_on() {
        let input = b"\xef\xbb\xbfa,b\r\n\r\n1,\"x\ny\"\n\n2,\"q\"\"q\"\n3";
        assert_eq!(
            read_all(input, Limits::default()),
            [
                row(1, &["a", "b"]),
                row(3, &["1", "x\ny"]),
                row(6, &["2", "q\"q"]),
                row(7, &["3"]),
            ]
        );
    }

    #[test]
    fn a_quote_never_closed_loses_only_its_first_line() {
        // Row 10 of 100 opens a quote that nothing closes: one line given up, 99 rows read.
        let mut input = String::new();
        for i in 1..=100 {
            let quote = if i == 10 { "\"" } else { "" };
            input.push_str(&format!("{i},{quote}text {i}\n"));
        }
        let reads = read_all(input.as_bytes(), Limits::default());
        assert_eq!(reads.len(), 100);
        assert_eq!(
            reads[9],
            Read::Gave(10, 100, Runaway::QuoteNeverClosed, "10,\"text 10".into())
        );
        assert_eq!(reads[10], row(11, &["11", "text 11"]));
        assert_eq!(reads[99], row(100, &["100", "text 100"]));
        let rows = reads.iter().filter(|r| matches!(r, Read::Row(..))).count();
        assert_eq!(rows, 99);
    }

    #[test]
    fn a_quote_closed_by_a_later_row_gives_up_each_line_in_turn() {
        let input = b"1,\"open\n2,\"1,000\",x\n3,ok\n";
        assert_eq!(
            read_all(input, Limits::default()),
            [
                Read::Gave(1, 2, Runaway::QuoteClosedInsideAField, "1,\"open".into()),
                row(2, &["2", "1,000", "x"]),
                row(3, &["3", "ok"]),
            ]
        );
    }

    #[test]
    fn records_over_the_line_limit_are_given_up() {
        let limits = Limits {
            max_bytes: MAX_RECORD_BYTES,
            max_lines: 3,
        };
        // Three lines in one quoted field are allowed, four are not.
        let input = b"1,\"a\nb\nc\"\n2,\"a\nb\nc\nd\"\n3,ok\n";
        assert_eq!(
            read_all(input, limits),
            [
                row(1, &["1", "a\nb\nc"]),
                Read::Gave(4, 7, Runaway::TooManyLines, "2,\"a".into()),
                // The lines it swallowed come back as rows of their own (a quote inside an
                // unquoted field is text).
                row(5, &["b"]),
                row(6, &["c"]),
                row(7, &["d\""]),
                row(8, &["3", "ok"]),
            ]
        );
    }

    #[test]
    fn a_huge_line_is_given_up_within_bounded_memory() {
        let limits = Limits {
            max_bytes: 1000,
            max_lines: MAX_RECORD_LINES,
        };
        // 5 MB on one line: more than the whole buffer, read past a chunk at a time.
        let mut input = b"1,ok\n2,".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5 << 20));
        input.extend_from_slice(b"\r\n3,\"");
        input.extend(std::iter::repeat_n(b'y', 2000));
        input.extend_from_slice(b"\"\n4,ok");
        let mut reader = RecordReader::new(input.as_slice(), limits);
        let mut record = Record::default();
        assert_eq!(reader.read(&mut record).unwrap(), Next::Record);
        let Next::GivenUp(huge) = reader.read(&mut record).unwrap() else {
            panic!("the huge line is given up");
        };
        assert_eq!((huge.why, huge.first_line), (Runaway::TooManyBytes, 2));
        assert_eq!(huge.line_bytes, 2 + (5 << 20));
        assert_eq!(huge.raw.len(), RAW_BYTES);
        let Next::GivenUp(quoted) = reader.read(&mut record).unwrap() else {
            panic!("the long quoted field is given up");
        };
        assert_eq!((quoted.why, quoted.first_line), (Runaway::TooManyBytes, 3));
        assert_eq!(reader.read(&mut record).unwrap(), Next::Record);
        assert_eq!((record.line(), record.get(1)), (4, Some(&b"ok"[..])));
        assert_eq!(reader.read(&mut record).unwrap(), Next::End);
        assert_eq!(reader.buf.len(), 1000 + CHUNK, "the buffer never grew");
        assert!(record.data.len() <= 2 * (1000 + CHUNK));
    }
}
