//! Syslog priorities as journalctl names and parses them.

use thiserror::Error;

/// journalctl's names, indexed by level.
pub const NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown priority {0:?}: expected 0-7 or one of emerg, alert, crit, err, warning, notice, info, debug")]
pub struct PriorityError(pub String);

/// Parses a level: a number 0–7 or a name (`emerg` … `debug`, case
/// insensitive; `panic`, `error` and `warn` accepted as syslog's aliases).
pub fn parse(s: &str) -> Result<u8, PriorityError> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u8>() {
        if n <= 7 {
            return Ok(n);
        }
        return Err(PriorityError(s.to_owned()));
    }
    let lower = t.to_ascii_lowercase();
    let level = match lower.as_str() {
        "panic" => 0,
        "error" => 3,
        "warn" => 4,
        other => match NAMES.iter().position(|n| *n == other) {
            Some(i) => i as u8,
            None => return Err(PriorityError(s.to_owned())),
        },
    };
    Ok(level)
}

/// Parses `LEVEL` (0..=LEVEL, as `journalctl -p` does) or `FROM..TO`
/// (either side may be empty), returning the inclusive range (min, max).
pub fn parse_range(s: &str) -> Result<(u8, u8), PriorityError> {
    match s.split_once("..") {
        None => Ok((0, parse(s)?)),
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { parse(a)? };
            let hi = if b.is_empty() { 7 } else { parse(b)? };
            Ok((lo.min(hi), lo.max(hi)))
        }
    }
}

/// journalctl's name of a level; levels above 7 are clamped to `debug`.
pub fn name(level: u8) -> &'static str {
    NAMES[usize::from(level.min(7))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse("err"), Ok(3));
        assert_eq!(parse("WARNING"), Ok(4));
        assert_eq!(parse("warn"), Ok(4));
        assert_eq!(parse("7"), Ok(7));
        assert!(parse("8").is_err());
        assert!(parse("loud").is_err());
        assert_eq!(parse_range("err..warning"), Ok((3, 4)));
        assert_eq!(parse_range("warning..err"), Ok((3, 4)));
        assert_eq!(parse_range("notice"), Ok((0, 5)));
        assert_eq!(parse_range("..3"), Ok((0, 3)));
        assert_eq!(name(6), "info");
    }
}
