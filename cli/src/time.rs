//! `--since`/`--until` times as journalctl understands them: absolute
//! (`2024-05-01 10:00:00`, `2024-05-01`, `10:00`, RFC 3339, `@EPOCH`),
//! `now`, `today`, `yesterday`, `tomorrow`, and relative (`-1h`, `+30min`,
//! `2 hours ago`). Parsing is jiff's; local times use the `TZ` zone.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("cannot parse time {0:?} (try \"2024-05-01 10:00:00\", \"today\", \"yesterday\", \"-1h\" or \"2 hours ago\")")]
pub struct TimeError(pub String);

/// Microseconds since the epoch of `s`, with `now` as the reference.
pub fn parse_at(s: &str, now: &Zoned) -> Result<u64, TimeError> {
    let err = || TimeError(s.to_owned());
    let t = s.trim();
    let zoned = match t {
        "now" => now.clone(),
        "today" => now.start_of_day().map_err(|_| err())?,
        "yesterday" => now
            .start_of_day()
            .and_then(|d| d.yesterday())
            .map_err(|_| err())?,
        "tomorrow" => now
            .start_of_day()
            .and_then(|d| d.tomorrow())
            .map_err(|_| err())?,
        _ => absolute(t, now.time_zone())
            .or_else(|| relative(t, now))
            .ok_or_else(err)?,
    };
    u64::try_from(zoned.timestamp().as_microsecond()).map_err(|_| err())
}

/// [`parse_at`] against the current time in the local zone.
pub fn parse(s: &str) -> Result<u64, TimeError> {
    parse_at(s, &Zoned::now())
}

fn absolute(t: &str, tz: &TimeZone) -> Option<Zoned> {
    if let Some(epoch) = t.strip_prefix('@') {
        let secs: f64 = epoch.parse().ok()?;
        let ts = Timestamp::from_microsecond((secs * 1e6).round() as i64).ok()?;
        return Some(ts.to_zoned(tz.clone()));
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Some(ts.to_zoned(tz.clone()));
    }
    if let Ok(dt) = t.parse::<DateTime>() {
        return dt.to_zoned(tz.clone()).ok();
    }
    if let Ok(d) = t.parse::<Date>() {
        return d.to_zoned(tz.clone()).ok();
    }
    if let Ok(time) = t.parse::<Time>() {
        // A bare time means today, as in journalctl.
        let today = Zoned::now().with_time_zone(tz.clone()).date();
        return today.to_datetime(time).to_zoned(tz.clone()).ok();
    }
    None
}

fn relative(t: &str, now: &Zoned) -> Option<Zoned> {
    // Spans without a sign or "ago" are not times ("2h" alone is not a
    // point in time for journalctl either, but "+2h" is).
    let signed = t.starts_with(['-', '+']) || t.ends_with("ago");
    if !signed {
        return None;
    }
    let span: Span = t.parse().ok()?;
    now.checked_add(span).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Zoned {
        "2024-05-10T15:30:45.25+00:00[UTC]".parse().unwrap()
    }

    fn usec(s: &str) -> u64 {
        let z: Zoned = s.parse().unwrap();
        z.timestamp().as_microsecond() as u64
    }

    #[test]
    fn keywords() {
        assert_eq!(
            parse_at("now", &now()),
            Ok(usec("2024-05-10T15:30:45.25+00:00[UTC]"))
        );
        assert_eq!(
            parse_at("today", &now()),
            Ok(usec("2024-05-10T00:00:00+00:00[UTC]"))
        );
        assert_eq!(
            parse_at("yesterday", &now()),
            Ok(usec("2024-05-09T00:00:00+00:00[UTC]"))
        );
        assert_eq!(
            parse_at("tomorrow", &now()),
            Ok(usec("2024-05-11T00:00:00+00:00[UTC]"))
        );
    }

    #[test]
    fn relative_times() {
        assert_eq!(
            parse_at("-1h", &now()),
            Ok(usec("2024-05-10T14:30:45.25+00:00[UTC]"))
        );
        assert_eq!(
            parse_at("+30min", &now()),
            Ok(usec("2024-05-10T16:00:45.25+00:00[UTC]"))
        );
        assert_eq!(
            parse_at("2 hours ago", &now()),
            Ok(usec("2024-05-10T13:30:45.25+00:00[UTC]"))
        );
        assert_eq!(
            parse_at("1 day ago", &now()),
            Ok(usec("2024-05-09T15:30:45.25+00:00[UTC]"))
        );
    }

    #[test]
    fn absolute_times() {
        assert_eq!(
            parse_at("2024-01-02 03:04:05", &now()),
            Ok(usec("2024-01-02T03:04:05+00:00[UTC]"))
        );
        assert_eq!(
            parse_at("2024-01-02T03:04:05", &now()),
            Ok(usec("2024-01-02T03:04:05+00:00[UTC]"))
        );
        assert_eq!(
            parse_at("2024-01-02", &now()),
            Ok(usec("2024-01-02T00:00:00+00:00[UTC]"))
        );
        assert_eq!(
            parse_at("2024-01-02T03:04:05+02:00", &now()),
            Ok(usec("2024-01-02T01:04:05+00:00[UTC]"))
        );
        assert_eq!(parse_at("@1700000000", &now()), Ok(1_700_000_000_000_000));
        let berlin: Zoned = "2024-05-10T15:30:45+02:00[Europe/Berlin]".parse().unwrap();
        assert_eq!(
            parse_at("2024-01-02 03:04:05", &berlin),
            Ok(usec("2024-01-02T02:04:05+00:00[UTC]"))
        );
    }

    #[test]
    fn garbage_is_an_error_naming_the_input() {
        for bad in ["", "soon", "2h", "2024-13-01", "-1 parsec"] {
            let e = parse_at(bad, &now()).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
