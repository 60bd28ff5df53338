//! journalctl's export format (`journalctl -o export`), both directions.
//!
//! An entry is a run of fields ended by an empty line. A field is either
//! `NAME=value\n`, or, when the value is binary or holds a newline,
//! `NAME\n`, a little-endian u64 length, the raw bytes and `\n`. The
//! decoder works on bytes with explicit lengths: incomplete input is not an
//! error, every length read from the input is capped, a field over the cap
//! is truncated (counted), and a malformed entry is skipped up to the next
//! empty line (counted) rather than ending the stream.

use crate::fields::{self, is_address_field, is_valid_name};
use crate::{Entry, Field};
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use tokio_util::codec::Decoder;

/// Binary lengths beyond this are treated as corruption, not as a value to
/// skip: journald itself refuses entries this large.
const MAX_SANE_FIELD: u64 = 1 << 32;
/// An entry with more fields than this is treated as corrupt.
pub const MAX_FIELDS: usize = 4096;
/// The longest field name plus `=`.
const NAME_MAX: usize = 65;

/// Counts of what the decoder met so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    pub entries: u64,
    pub malformed: u64,
    pub truncated_fields: u64,
}

#[derive(Debug)]
enum State {
    /// At the start of a line.
    Line,
    /// After a binary field's name line; the 8-byte length is next.
    BinaryLen { name: Bytes },
    /// Inside a binary value of `len` bytes.
    BinaryValue { name: Bytes, len: u64 },
    /// Skipping the rest of an over-long binary value, then its `\n`.
    Discard { remaining: u64 },
    /// Skipping the rest of an over-long text line.
    DiscardLine,
    /// After a malformed field: skip to the empty line that ends the entry.
    Resync,
}

#[derive(Debug, Default)]
struct Partial {
    cursor: Option<String>,
    realtime: Option<u64>,
    monotonic: Option<u64>,
    fields: Vec<Field>,
    started: bool,
}

/// Streaming decoder of the export format into [`Entry`] values.
#[derive(Debug)]
pub struct ExportDecoder {
    max_field: usize,
    state: State,
    cur: Partial,
    stats: DecodeStats,
}

impl ExportDecoder {
    /// `max_field_bytes` caps a single field value; longer values are cut
    /// to it and counted in [`DecodeStats::truncated_fields`].
    pub fn new(max_field_bytes: usize) -> Self {
        ExportDecoder {
            max_field: max_field_bytes.max(1),
            state: State::Line,
            cur: Partial::default(),
            stats: DecodeStats::default(),
        }
    }

    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    fn add_field(&mut self, name: &[u8], value: Bytes) {
        self.cur.started = true;
        if is_address_field(name) {
            let text = std::str::from_utf8(&value).ok();
            match name {
                n if n == fields::CURSOR.as_bytes() => self.cur.cursor = text.map(str::to_owned),
                n if n == fields::REALTIME_TIMESTAMP.as_bytes() => {
                    self.cur.realtime = text.and_then(|t| t.parse().ok())
                }
                n if n == fields::MONOTONIC_TIMESTAMP.as_bytes() => {
                    self.cur.monotonic = text.and_then(|t| t.parse().ok())
                }
                // __SEQNUM, __SEQNUM_ID and future address fields are all
                // carried by the cursor.
                _ => {}
            }
            return;
        }
        // Names were checked by is_valid_name: ASCII, so UTF-8.
        self.cur.fields.push(Field::new(name.to_vec(), value));
        if self.cur.fields.len() > MAX_FIELDS {
            self.resync("entry has too many fields");
        }
    }

    /// Ends the current entry at an empty line.
    fn finish(&mut self) -> Option<Entry> {
        let p = std::mem::take(&mut self.cur);
        if !p.started {
            return None;
        }
        match (p.cursor, p.realtime) {
            (Some(cursor), Some(realtime_usec)) if !cursor.is_empty() => {
                self.stats.entries += 1;
                Some(Entry {
                    cursor,
                    realtime_usec,
                    monotonic_usec: p.monotonic.unwrap_or(0),
                    fields: p.fields,
                })
            }
            _ => {
                self.malformed("entry without __CURSOR or __REALTIME_TIMESTAMP");
                None
            }
        }
    }

    fn malformed(&mut self, why: &str) {
        self.stats.malformed += 1;
        tracing::warn!(reason = why, "skipping malformed journal entry");
    }

    fn resync(&mut self, why: &str) {
        self.malformed(why);
        self.cur = Partial::default();
        self.state = State::Resync;
    }

    /// One step of the state machine. `Ok(None)` with `progress == false`
    /// means more input is needed.
    fn step(&mut self, buf: &mut BytesMut) -> (Option<Entry>, bool) {
        match std::mem::replace(&mut self.state, State::Line) {
            State::Line => {
                let Some(&first) = buf.first() else {
                    return (None, false);
                };
                if first == b'\n' {
                    buf.advance(1);
                    return (self.finish(), true);
                }
                let limit = NAME_MAX + self.max_field + 1;
                let window = &buf[..buf.len().min(limit)];
                match memchr::memchr(b'\n', window) {
                    Some(nl) => {
                        let line = buf.split_to(nl + 1).freeze();
                        let line = line.slice(..nl);
                        match memchr::memchr(b'=', &line) {
                            Some(eq) => {
                                if !is_valid_name(&line[..eq]) {
                                    self.resync("invalid field name");
                                } else {
                                    let value = line.slice(eq + 1..);
                                    self.add_field(&line[..eq], value);
                                }
                            }
                            None if is_valid_name(&line) => {
                                self.state = State::BinaryLen { name: line };
                            }
                            None => {
                                self.resync("line is neither NAME=VALUE nor a binary field name")
                            }
                        }
                        (None, true)
                    }
                    None if window.len() >= limit => {
                        // A text line longer than the cap: keep the capped
                        // prefix if it starts with a valid name.
                        match memchr::memchr(b'=', &window[..NAME_MAX.min(window.len())]) {
                            Some(eq) if is_valid_name(&window[..eq]) => {
                                let line = buf.split_to(limit).freeze();
                                let value = line.slice(eq + 1..(eq + 1 + self.max_field));
                                self.stats.truncated_fields += 1;
                                self.add_field(&line[..eq], value);
                                self.state = State::DiscardLine;
                            }
                            _ => self.resync("over-long line without a field name"),
                        }
                        (None, true)
                    }
                    None => (None, false),
                }
            }
            State::BinaryLen { name } => {
                if buf.len() < 8 {
                    self.state = State::BinaryLen { name };
                    return (None, false);
                }
                let len = buf.get_u64_le();
                if len > MAX_SANE_FIELD {
                    self.resync("binary field length out of range");
                } else {
                    self.state = State::BinaryValue { name, len };
                }
                (None, true)
            }
            State::BinaryValue { name, len } => {
                // len <= MAX_SANE_FIELD, so it fits in usize on 64-bit.
                let len_usize = len as usize;
                if len_usize <= self.max_field {
                    if buf.len() < len_usize + 1 {
                        self.state = State::BinaryValue { name, len };
                        return (None, false);
                    }
                    let value = buf.split_to(len_usize).freeze();
                    if buf[0] != b'\n' {
                        self.resync("binary field not followed by a newline");
                        return (None, true);
                    }
                    buf.advance(1);
                    self.add_field(&name, value);
                } else {
                    if buf.len() < self.max_field {
                        self.state = State::BinaryValue { name, len };
                        return (None, false);
                    }
                    let value = buf.split_to(self.max_field).freeze();
                    self.stats.truncated_fields += 1;
                    self.add_field(&name, value);
                    if !matches!(self.state, State::Resync) {
                        self.state = State::Discard {
                            remaining: len - self.max_field as u64,
                        };
                    }
                }
                (None, true)
            }
            State::Discard { remaining } => {
                let n = remaining.min(buf.len() as u64);
                buf.advance(n as usize);
                let remaining = remaining - n;
                if remaining > 0 {
                    self.state = State::Discard { remaining };
                    return (None, false);
                }
                match buf.first() {
                    None => {
                        self.state = State::Discard { remaining: 0 };
                        (None, false)
                    }
                    Some(b'\n') => {
                        buf.advance(1);
                        (None, true)
                    }
                    Some(_) => {
                        self.resync("binary field not followed by a newline");
                        (None, true)
                    }
                }
            }
            State::DiscardLine => match memchr::memchr(b'\n', buf) {
                Some(nl) => {
                    buf.advance(nl + 1);
                    (None, true)
                }
                None => {
                    buf.clear();
                    self.state = State::DiscardLine;
                    (None, false)
                }
            },
            State::Resync => match memchr::memmem::find(buf, b"\n\n") {
                Some(at) => {
                    buf.advance(at + 2);
                    self.cur = Partial::default();
                    (None, true)
                }
                None => {
                    // Keep a trailing newline: it may be half of the separator.
                    let keep = usize::from(buf.last() == Some(&b'\n'));
                    buf.advance(buf.len() - keep);
                    self.state = State::Resync;
                    (None, false)
                }
            },
        }
    }
}

impl Decoder for ExportDecoder {
    type Item = Entry;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Entry>, io::Error> {
        loop {
            match self.step(buf) {
                (Some(entry), _) => return Ok(Some(entry)),
                (None, true) => continue,
                (None, false) => return Ok(None),
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Entry>, io::Error> {
        if let Some(entry) = self.decode(buf)? {
            return Ok(Some(entry));
        }
        // An entry cut off by the end of the stream (journalctl killed or
        // exited mid-write) is incomplete, not malformed: whoever restarts
        // the reader resumes from the last cursor and reads it again.
        if self.cur.started || !buf.is_empty() {
            tracing::debug!(
                bytes = buf.len(),
                "discarding incomplete entry at end of export stream"
            );
        }
        buf.clear();
        self.cur = Partial::default();
        self.state = State::Line;
        Ok(None)
    }
}

/// Whether journalctl would print `value` as text: valid UTF-8 without
/// control characters (tab allowed; newline only when `newline_ok`). The
/// export format needs `newline_ok == false`; `-o json` allows newlines.
pub fn is_printable(value: &[u8], newline_ok: bool) -> bool {
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    s.chars().all(|c| {
        let control = (c < ' ' && c != '\t' && c != '\n') || ('\u{7f}'..='\u{9f}').contains(&c);
        !control && (newline_ok || c != '\n')
    })
}

/// Appends one entry in export format, address fields first.
pub fn write_entry(entry: &Entry, out: &mut Vec<u8>) {
    use std::io::Write;
    // Writes to a Vec cannot fail.
    let _ = write!(
        out,
        "{}={}\n{}={}\n{}={}\n",
        fields::CURSOR,
        entry.cursor,
        fields::REALTIME_TIMESTAMP,
        entry.realtime_usec,
        fields::MONOTONIC_TIMESTAMP,
        entry.monotonic_usec
    );
    for f in &entry.fields {
        write_field(&f.name, &f.value, out);
    }
    out.push(b'\n');
}

/// Appends one field in export format.
pub fn write_field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(name);
    if is_printable(value, false) {
        out.push(b'=');
        out.extend_from_slice(value);
    } else {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests;
