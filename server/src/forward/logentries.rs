//! The Logentries token TCP sink: `<token> <line>\n` per event, over TLS
//! (port 443) or plain TCP (80, 514, 10000).
//!
//! A message's own line breaks become U+2028 (LINE SEPARATOR) so that one
//! entry stays one event. A line longer than [`MAX_LINE`] bytes is split at
//! character boundaries into parts that end in ` (part i/n)`; nothing is
//! cut off silently.

use super::sink::{Sink, SinkError};
use super::transport::{Conn, Endpoint};

/// Longest line sent as one event, in bytes (without token and newline).
pub const MAX_LINE: usize = 64 * 1024;
/// Room kept in each part for its ` (part i/n)` suffix.
const SUFFIX_ROOM: usize = 32;

/// Logentries over one connection.
pub struct Logentries {
    token: String,
    endpoint: Endpoint,
    conn: Option<Conn>,
}

impl Logentries {
    pub fn new(token: &str, endpoint: Endpoint) -> Logentries {
        Logentries {
            token: token.to_owned(),
            endpoint,
            conn: None,
        }
    }
}

/// Replaces CR LF, LF and CR with U+2028.
fn one_line(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains(['\n', '\r']) {
        return line.into();
    }
    line.replace("\r\n", "\u{2028}")
        .replace(['\n', '\r'], "\u{2028}")
        .into()
}

/// Splits `s` into pieces of at most `max` bytes at character boundaries.
fn pieces(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (a, b) = rest.split_at(cut);
        out.push(a);
        rest = b;
    }
    out.push(rest);
    out
}

impl Sink for Logentries {
    fn encode(&self, line: &str, out: &mut Vec<u8>) -> u64 {
        let line = one_line(line);
        if line.len() <= MAX_LINE {
            out.extend_from_slice(self.token.as_bytes());
            out.push(b' ');
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            return 1;
        }
        let parts = pieces(&line, MAX_LINE - SUFFIX_ROOM);
        let n = parts.len();
        for (i, p) in parts.iter().enumerate() {
            out.extend_from_slice(self.token.as_bytes());
            out.push(b' ');
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(format!(" (part {}/{n})\n", i + 1).as_bytes());
        }
        n as u64
    }

    async fn connect(&mut self) -> Result<(), SinkError> {
        if self.conn.is_none() {
            self.conn = Some(Conn::open(&self.endpoint).await?);
        }
        Ok(())
    }

    async fn write(&mut self, buf: &[u8]) -> Result<(), SinkError> {
        let conn = self.conn.as_mut().ok_or(SinkError::NotConnected)?;
        conn.write(buf).await
    }

    async fn confirm(&mut self) -> Result<(), SinkError> {
        let conn = self.conn.as_mut().ok_or(SinkError::NotConnected)?;
        conn.confirm().await
    }

    fn disconnect(&mut self) {
        self.conn = None;
    }

    fn is_connected(&self) -> bool {
        self.conn.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "2bfbea1e-10c3-4419-bdad-7e6435882e1f";

    fn sink() -> Logentries {
        Logentries::new(
            TOKEN,
            Endpoint {
                host: "localhost".into(),
                port: 1,
                tls: None,
            },
        )
    }

    fn lines(s: &Logentries, line: &str) -> (u64, Vec<String>) {
        let mut out = Vec::new();
        let n = s.encode(line, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n'));
        (
            n,
            text.trim_end_matches('\n')
                .split('\n')
                .map(str::to_owned)
                .collect(),
        )
    }

    #[test]
    fn frames_with_token_and_keeps_one_event_per_entry() {
        let (n, l) = lines(&sink(), "web a.service: one\ntwo\r\nthree\rfour");
        assert_eq!(n, 1);
        assert_eq!(
            l,
            vec![format!(
                "{TOKEN} web a.service: one\u{2028}two\u{2028}three\u{2028}four"
            )]
        );
    }

    #[test]
    fn long_lines_split_into_numbered_parts_without_loss() {
        // Multi-byte characters across the cut points must stay whole.
        let long: String = "é".repeat(MAX_LINE) + "end";
        let (n, l) = lines(&sink(), &long);
        assert_eq!(n as usize, l.len());
        assert_eq!(n, 3);
        let mut joined = String::new();
        for (i, line) in l.iter().enumerate() {
            let body = line.strip_prefix(&format!("{TOKEN} ")).unwrap();
            let suffix = format!(" (part {}/{n})", i + 1);
            assert!(body.len() <= MAX_LINE, "{}", body.len());
            joined.push_str(body.strip_suffix(&suffix).unwrap());
        }
        assert_eq!(joined, long);
        let (n, _) = lines(&sink(), &"x".repeat(MAX_LINE));
        assert_eq!(n, 1);
    }
}
