//! Turning entries into the bytes `jrctl logs -o MODE` prints. Each mode
//! matches journalctl's layout of the same name; `logentries` is the line
//! journal-router forwards (`host unit: message`).

pub mod json;
pub mod short;

use crate::args::Output;
use jiff::tz::TimeZone;
use jr_journal::fields;
use jr_proto::v1::{Entry, LogEntry};

/// journalctl's colours by priority (none for info).
const RED: &str = "\x1b[0;1;31m";
const YELLOW: &str = "\x1b[0;1;33m";
const BOLD: &str = "\x1b[0;1;39m";
const GREY: &str = "\x1b[0;38;5;245m";
pub(crate) const RESET: &str = "\x1b[0m";

pub(crate) fn colour_for(priority: i32) -> Option<&'static str> {
    match priority {
        0..=3 => Some(RED),
        4 => Some(YELLOW),
        5 => Some(BOLD),
        7 => Some(GREY),
        _ => None,
    }
}

/// The first value of field `name`.
pub(crate) fn field<'a>(e: &'a LogEntry, name: &str) -> Option<&'a [u8]> {
    e.fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| &f.value[..])
}

/// Formats entries in one mode.
pub struct Formatter {
    mode: Output,
    tz: TimeZone,
    colour: bool,
}

impl Formatter {
    /// `colour` only takes effect in the modes journalctl colours.
    pub fn new(mode: Output, tz: TimeZone, colour: bool) -> Self {
        Formatter { mode, tz, colour }
    }

    /// Whether this mode prints journalctl's informational lines.
    pub fn is_text(&self) -> bool {
        matches!(
            self.mode,
            Output::Short | Output::ShortIso | Output::ShortPrecise
        )
    }

    /// Appends `e` to `out`.
    pub fn write(&self, e: &LogEntry, out: &mut Vec<u8>) {
        match self.mode {
            Output::Short => short::write(e, short::Style::Short, &self.tz, self.colour, out),
            Output::ShortIso => short::write(e, short::Style::Iso, &self.tz, self.colour, out),
            Output::ShortPrecise => {
                short::write(e, short::Style::Precise, &self.tz, self.colour, out)
            }
            Output::Json => json::write(e, out),
            Output::Cat => cat(e, self.colour, out),
            Output::Export => export(e, out),
            Output::Logentries => logentries(e, out),
        }
    }
}

fn cat(e: &LogEntry, colour: bool, out: &mut Vec<u8>) {
    let Some(m) = field(e, fields::MESSAGE) else {
        return;
    };
    match colour_for(e.priority).filter(|_| colour) {
        Some(c) => {
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(m);
            out.extend_from_slice(RESET.as_bytes());
        }
        None => out.extend_from_slice(m),
    }
    out.push(b'\n');
}

fn export(e: &LogEntry, out: &mut Vec<u8>) {
    let entry = Entry {
        cursor: e.cursor.clone(),
        realtime_usec: e.realtime_usec,
        monotonic_usec: e.monotonic_usec,
        fields: e.fields.clone(),
    };
    jr_journal::export::write_entry(&entry, out);
}

fn logentries(e: &LogEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(e.host.as_bytes());
    out.push(b' ');
    out.extend_from_slice(e.unit.as_bytes());
    out.extend_from_slice(b": ");
    let m = field(e, fields::MESSAGE).unwrap_or_default();
    // One entry, one line: newlines become U+2028 as on the wire.
    for part in String::from_utf8_lossy(m).split_inclusive('\n') {
        match part.strip_suffix('\n') {
            Some(line) => {
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice("\u{2028}".as_bytes());
            }
            None => out.extend_from_slice(part.as_bytes()),
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use jr_proto::v1::Field;

    #[test]
    fn logentries_keeps_one_line_per_entry() {
        let e = LogEntry {
            host: "web1".into(),
            unit: "nginx.service".into(),
            fields: vec![Field {
                name: "MESSAGE".into(),
                value: bytes::Bytes::from_static(b"a\nb"),
            }],
            ..Default::default()
        };
        let mut out = Vec::new();
        Formatter::new(Output::Logentries, TimeZone::UTC, false).write(&e, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "web1 nginx.service: a\u{2028}b\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let e = LogEntry {
            priority: 3,
            fields: vec![Field {
                name: "MESSAGE".into(),
                value: bytes::Bytes::from_static(b"boom"),
            }],
            ..Default::default()
        };
        let mut out = Vec::new();
        Formatter::new(Output::Cat, TimeZone::UTC, true).write(&e, &mut out);
        assert_eq!(out, b"\x1b[0;1;31mboom\x1b[0m\n");
        out.clear();
        Formatter::new(Output::Cat, TimeZone::UTC, false).write(&e, &mut out);
        assert_eq!(out, b"boom\n");
    }
}
