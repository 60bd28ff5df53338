//! journalctl's `short`, `short-iso` and `short-precise` layouts:
//! `TIME HOST IDENTIFIER[PID]: MESSAGE`, continuation lines of a message
//! indented under its first line, a message that is not printable text
//! shown as `[N blob data]`, entries without MESSAGE left out.

use super::{colour_for, field, RESET};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use jr_journal::export::is_printable;
use jr_journal::fields;
use jr_proto::v1::LogEntry;

/// Values this long are not printed as identifiers or hostnames.
const PRINT_CHAR_THRESHOLD: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Short,
    Iso,
    Precise,
}

fn shall_print(v: &[u8]) -> bool {
    v.len() < PRINT_CHAR_THRESHOLD && is_printable(v, true)
}

/// journalctl shows when the entry was made at its source when the source
/// said so (`_SOURCE_REALTIME_TIMESTAMP`), else when journald received it.
fn realtime(e: &LogEntry) -> u64 {
    field(e, "_SOURCE_REALTIME_TIMESTAMP")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(e.realtime_usec)
}

fn timestamp(style: Style, usec: u64, tz: &TimeZone) -> String {
    let Ok(ts) = Timestamp::from_microsecond(i64::try_from(usec).unwrap_or(i64::MAX)) else {
        return format!("@{usec}");
    };
    let z = ts.to_zoned(tz.clone());
    match style {
        Style::Short => z.strftime("%b %d %H:%M:%S").to_string(),
        Style::Precise => format!("{}.{:06}", z.strftime("%b %d %H:%M:%S"), usec % 1_000_000),
        Style::Iso => z.strftime("%Y-%m-%dT%H:%M:%S%z").to_string(),
    }
}

/// journalctl's `FORMAT_BYTES`: 1024-based, one decimal below 10 units.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("E", 1 << 60),
        ("P", 1 << 50),
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (suffix, factor) in UNITS {
        if n >= factor {
            let whole = n / factor;
            if whole < 10 {
                let tenth = (n % factor) * 10 / factor;
                return format!("{whole}.{tenth}{suffix}");
            }
            return format!("{whole}{suffix}");
        }
    }
    format!("{n}B")
}

/// journalctl's `strip_tab_ansi`: a tab becomes eight spaces, carriage
/// returns and ANSI colour sequences (`ESC [ digits ; m`) are dropped, so
/// that what is left can be judged printable.
fn strip_tab_ansi(message: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !message.iter().any(|b| matches!(b, b'\t' | b'\r' | 0x1b)) {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\t' => out.extend_from_slice(b"        "),
            b'\r' => {}
            0x1b if message.get(i + 1) == Some(&b'[') => {
                let params = message[i + 2..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit() || matches!(b, b';' | b':'))
                    .count();
                let end = i + 2 + params;
                if message.get(end) == Some(&b'm') {
                    i = end + 1;
                    continue;
                }
                out.push(0x1b);
            }
            b => out.push(b),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// Appends `e` in `style`; nothing for an entry without MESSAGE.
pub fn write(e: &LogEntry, style: Style, tz: &TimeZone, colour: bool, out: &mut Vec<u8>) {
    let Some(message) = field(e, fields::MESSAGE) else {
        return;
    };
    let mut head = timestamp(style, realtime(e), tz);
    if let Some(h) = field(e, fields::HOSTNAME).filter(|h| shall_print(h)) {
        head.push(' ');
        head.push_str(&String::from_utf8_lossy(h));
    }
    let ident = field(e, fields::SYSLOG_IDENTIFIER)
        .filter(|v| shall_print(v))
        .or_else(|| field(e, fields::COMM).filter(|v| shall_print(v)));
    match ident {
        Some(i) => {
            head.push(' ');
            head.push_str(&String::from_utf8_lossy(i));
        }
        None => head.push_str(" unknown"),
    }
    let pid = field(e, fields::PID)
        .filter(|v| shall_print(v))
        .or_else(|| field(e, fields::SYSLOG_PID).filter(|v| shall_print(v)));
    if let Some(p) = pid {
        head.push('[');
        head.push_str(&String::from_utf8_lossy(p));
        head.push(']');
    }
    head.push_str(": ");
    let indent = head.chars().count();
    out.extend_from_slice(head.as_bytes());
    let (on, off) = match colour_for(e.priority) {
        Some(c) if colour => (c.as_bytes(), RESET.as_bytes()),
        _ => (&b""[..], &b""[..]),
    };
    let message = &strip_tab_ansi(message)[..];
    if !is_printable(message, true) {
        out.extend_from_slice(on);
        out.extend_from_slice(
            format!("[{} blob data]", format_bytes(message.len() as u64)).as_bytes(),
        );
        out.extend_from_slice(off);
        out.push(b'\n');
        return;
    }
    if message.is_empty() {
        out.push(b'\n');
        return;
    }
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        if n > 0 {
            out.extend(std::iter::repeat_n(b' ', indent));
        }
        out.extend_from_slice(on);
        out.extend_from_slice(line);
        out.extend_from_slice(off);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jr_proto::v1::Field;

    fn entry(fields: &[(&str, &[u8])]) -> LogEntry {
        LogEntry {
            realtime_usec: 1_700_000_001_500_000,
            priority: 6,
            fields: fields
                .iter()
                .map(|(n, v)| Field {
                    name: (*n).to_owned().into(),
                    value: bytes::Bytes::copy_from_slice(v),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn show(e: &LogEntry, style: Style) -> String {
        let mut out = Vec::new();
        write(e, style, &TimeZone::UTC, false, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn layouts_match_journalctl() {
        let e = entry(&[
            ("_HOSTNAME", b"node1"),
            ("SYSLOG_IDENTIFIER", b"app"),
            ("_PID", b"42"),
            ("MESSAGE", b"line one\nline two"),
        ]);
        assert_eq!(
            show(&e, Style::Short),
            "Nov 14 22:13:21 node1 app[42]: line one\n                               line two\n"
        );
        assert_eq!(
            show(&e, Style::Precise),
            "Nov 14 22:13:21.500000 node1 app[42]: line one\n                                      line two\n"
        );
        assert!(show(&e, Style::Iso).starts_with("2023-11-14T22:13:21+0000 node1 app[42]: "));
    }

    #[test]
    fn blobs_sources_and_missing_parts() {
        let e = entry(&[
            ("_COMM", b"systemd"),
            ("MESSAGE", b"bin\0ary\xff"),
            ("_SOURCE_REALTIME_TIMESTAMP", b"1699999995000000"),
        ]);
        assert_eq!(
            show(&e, Style::Short),
            "Nov 14 22:13:15 systemd: [8B blob data]\n"
        );
        assert_eq!(show(&entry(&[("_PID", b"1")]), Style::Short), "");
        assert_eq!(
            &strip_tab_ansi(b"a\tb\r\n\x1b[31mred\x1b[0m\x1b[2J")[..],
            b"a        b\nred\x1b[2J"
        );
        assert_eq!(format_bytes(1023), "1023B");
        assert_eq!(format_bytes(1536), "1.5K");
        assert_eq!(format_bytes(200 * 1024), "200K");
    }
}
