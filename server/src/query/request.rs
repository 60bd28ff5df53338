//! A `LogsRequest` checked and compiled: globs kept for the SQL side, the
//! regular expression compiled, field matches grouped, the resume token
//! parsed. Everything a client can get wrong is found here, before any SQL
//! runs, and reported as [`QueryError::Invalid`] naming the bad value.

use super::error::QueryError;
use crate::terms::Search;
use jr_proto::v1::{boot_selector, LogsRequest};
use regex::bytes::{Regex, RegexBuilder};

/// Longest glob, regex or search text accepted.
const MAX_PATTERN: usize = 4096;
/// Most patterns of one kind in a request.
const MAX_PATTERNS: usize = 256;
/// Compiled regex size limit: large enough for any hand-written pattern,
/// small enough that a hostile one cannot eat the server's memory.
const REGEX_SIZE_LIMIT: usize = 8 << 20;

/// Which boot of each host to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// 0 or negative: back from the newest boot; positive: 1 = oldest.
    Offset(i32),
    Id(String),
}

/// Where a scan goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A position between two entries in (realtime, id) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub realtime: i64,
    pub id: i64,
}

/// Continue a result that was cut at the page limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub direction: Direction,
    /// The last entry sent; the scan goes on strictly after it.
    pub after: Key,
    /// Highest entry id the result covers (fixed at its first page, so
    /// pages do not shift when new entries arrive).
    pub snapshot: i64,
    /// Entries still owed to a `limit`; 0 for no limit.
    pub remaining: u64,
}

impl Resume {
    pub fn encode(&self) -> String {
        let d = match self.direction {
            Direction::Forward => 'f',
            Direction::Backward => 'r',
        };
        format!(
            "v1:{d}:{}:{}:{}:{}",
            self.after.realtime, self.after.id, self.snapshot, self.remaining
        )
    }

    pub fn decode(token: &str) -> Result<Resume, QueryError> {
        let bad = || QueryError::invalid(format!("invalid resume token {token:?}"));
        let parts: Vec<&str> = token.split(':').collect();
        let [v, d, rt, id, snap, rem] = parts.as_slice() else {
            return Err(bad());
        };
        if *v != "v1" {
            return Err(bad());
        }
        let direction = match *d {
            "f" => Direction::Forward,
            "r" => Direction::Backward,
            _ => return Err(bad()),
        };
        Ok(Resume {
            direction,
            after: Key {
                realtime: rt.parse().map_err(|_| bad())?,
                id: id.parse().map_err(|_| bad())?,
            },
            snapshot: snap.parse().map_err(|_| bad())?,
            remaining: rem.parse().map_err(|_| bad())?,
        })
    }
}

/// A checked `LogsRequest`.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub hosts: Vec<String>,
    pub units: Vec<String>,
    pub containers: Vec<String>,
    pub identifiers: Vec<String>,
    /// Inclusive (min, max).
    pub priority: Option<(i64, i64)>,
    /// Field name with its accepted values: one group per field.
    pub matches: Vec<(String, Vec<Vec<u8>>)>,
    pub boot: Option<Boot>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub grep: Option<Regex>,
    /// `--search`: the index finds candidates, [`Search::matches`]
    /// checks them.
    pub search: Option<Search>,
    pub limit: u64,
    pub reverse: bool,
    pub resume: Option<Resume>,
    pub follow: bool,
    /// Follow from after this id, without the stored part.
    pub follow_after: Option<i64>,
}

fn patterns(kind: &str, list: &[String]) -> Result<Vec<String>, QueryError> {
    if list.len() > MAX_PATTERNS {
        return Err(QueryError::invalid(format!(
            "too many {kind} patterns ({}; at most {MAX_PATTERNS})",
            list.len()
        )));
    }
    list.iter()
        .map(|p| {
            if p.is_empty() {
                Err(QueryError::invalid(format!("empty {kind} pattern")))
            } else if p.len() > MAX_PATTERN {
                Err(QueryError::invalid(format!(
                    "{kind} pattern longer than {MAX_PATTERN} bytes"
                )))
            } else {
                Ok(p.clone())
            }
        })
        .collect()
}

/// The last line of regex's multi-line error ("error: unclosed group").
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_owned))
        .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim().to_owned())
}

fn compile_grep(pattern: &str, case_insensitive: bool) -> Result<Regex, QueryError> {
    if pattern.len() > MAX_PATTERN {
        return Err(QueryError::invalid(format!(
            "grep pattern longer than {MAX_PATTERN} bytes"
        )));
    }
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            QueryError::invalid(format!(
                "invalid regular expression {pattern:?}: {}",
                regex_reason(&e)
            ))
        })
}

fn priority(v: Option<u32>, which: &str) -> Result<Option<i64>, QueryError> {
    match v {
        Some(p) if p > 7 => Err(QueryError::invalid(format!(
            "priority {which} {p} is out of range 0-7"
        ))),
        other => Ok(other.map(i64::from)),
    }
}

fn time(v: Option<u64>, which: &str) -> Result<Option<i64>, QueryError> {
    v.map(|t| {
        i64::try_from(t)
            .map_err(|_| QueryError::invalid(format!("{which} time {t} is out of range")))
    })
    .transpose()
}

impl LogQuery {
    pub fn from_request(r: &LogsRequest) -> Result<LogQuery, QueryError> {
        let min = priority(r.priority_min, "minimum")?;
        let max = priority(r.priority_max, "maximum")?;
        let priority = match (min, max) {
            (None, None) => None,
            (a, b) => {
                let (lo, hi) = (a.unwrap_or(0), b.unwrap_or(7));
                Some((lo.min(hi), lo.max(hi)))
            }
        };
        let mut matches: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
        for m in &r.matches {
            if !jr_journal::fields::is_valid_name(m.name.as_bytes()) {
                return Err(QueryError::invalid(format!(
                    "invalid field name {:?} in match (A-Z, 0-9 and _, at most 64)",
                    m.name
                )));
            }
            match matches.iter_mut().find(|(n, _)| *n == m.name) {
                Some((_, values)) => values.push(m.value.to_vec()),
                None => matches.push((m.name.clone(), vec![m.value.to_vec()])),
            }
        }
        let boot = match r.boot.as_ref().and_then(|b| b.kind.as_ref()) {
            None | Some(boot_selector::Kind::Current(false)) => None,
            Some(boot_selector::Kind::Current(true)) => Some(Boot::Offset(0)),
            Some(boot_selector::Kind::Offset(o)) => Some(Boot::Offset(*o)),
            Some(boot_selector::Kind::BootId(id)) => {
                let id = id.to_ascii_lowercase();
                if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(QueryError::invalid(format!(
                        "invalid boot id {id:?}: expected 32 hex digits"
                    )));
                }
                Some(Boot::Id(id))
            }
        };
        let since = time(r.since_usec, "since")?;
        let until = time(r.until_usec, "until")?;
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err(QueryError::invalid("--since is after --until"));
            }
        }
        let grep = (!r.grep.is_empty())
            .then(|| compile_grep(&r.grep, r.grep_case_insensitive))
            .transpose()?;
        if r.search.len() > MAX_PATTERN {
            return Err(QueryError::invalid(format!(
                "search text longer than {MAX_PATTERN} bytes"
            )));
        }
        let resume = (!r.resume_token.is_empty())
            .then(|| Resume::decode(&r.resume_token))
            .transpose()?;
        Ok(LogQuery {
            hosts: patterns("host", &r.hosts)?,
            units: patterns("unit", &r.units)?,
            containers: patterns("container", &r.containers)?,
            identifiers: patterns("identifier", &r.identifiers)?,
            priority,
            matches,
            boot,
            since,
            until,
            grep,
            search: Search::parse(&r.search).map_err(|e| QueryError::invalid(e.to_string()))?,
            limit: u64::from(r.limit),
            reverse: r.reverse,
            resume,
            follow: r.follow,
            follow_after: (r.follow && r.follow_after_id > 0).then_some(r.follow_after_id),
        })
    }

    /// Whether the field matches accept an entry with `fields`.
    pub fn fields_match(&self, fields: &[jr_proto::v1::Field]) -> bool {
        self.matches.iter().all(|(name, values)| {
            fields
                .iter()
                .any(|f| f.name == *name && values.iter().any(|v| v[..] == f.value[..]))
        })
    }

    /// Whether any field match is asked for.
    pub fn needs_fields(&self) -> bool {
        !self.matches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jr_proto::v1::FieldMatch;

    #[test]
    fn resume_tokens_round_trip_and_reject_garbage() {
        let r = Resume {
            direction: Direction::Backward,
            after: Key {
                realtime: 17,
                id: 4,
            },
            snapshot: 99,
            remaining: 3,
        };
        assert_eq!(Resume::decode(&r.encode()).unwrap(), r);
        for bad in [
            "",
            "v1",
            "v2:f:1:2:3:4",
            "v1:x:1:2:3:4",
            "v1:f:a:2:3:4",
            "v1:f:1:2:3:4:5",
        ] {
            assert!(Resume::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_regex_names_pattern_and_reason_on_one_line() {
        let r = LogsRequest {
            grep: "(abc".into(),
            ..Default::default()
        };
        let e = LogQuery::from_request(&r).unwrap_err().to_string();
        assert_eq!(e, "invalid regular expression \"(abc\": unclosed group");
    }

    #[test]
    fn matches_group_by_field() {
        let m = |n: &str, v: &str| FieldMatch {
            name: n.into(),
            value: v.as_bytes().to_vec(),
        };
        let r = LogsRequest {
            matches: vec![m("A", "1"), m("B", "2"), m("A", "3")],
            ..Default::default()
        };
        let q = LogQuery::from_request(&r).unwrap();
        assert_eq!(q.matches.len(), 2);
        assert_eq!(q.matches[0].1, vec![b"1".to_vec(), b"3".to_vec()]);
        let f = |n: &str, v: &str| jr_proto::v1::Field {
            name: n.to_owned().into(),
            value: v.as_bytes().to_vec().into(),
        };
        assert!(q.fields_match(&[f("A", "3"), f("B", "2")]));
        assert!(!q.fields_match(&[f("A", "3"), f("B", "1")]));
        let bad = LogsRequest {
            matches: vec![m("bad name", "1")],
            ..Default::default()
        };
        assert!(LogQuery::from_request(&bad).is_err());
    }

    #[test]
    fn search_words_become_terms_and_words_without_any_are_refused() {
        let q = |text: &str| {
            LogQuery::from_request(&LogsRequest {
                search: text.into(),
                ..Default::default()
            })
        };
        assert_eq!(q("  ").unwrap().search, None);
        let s = q("a \"b OR").unwrap().search.unwrap();
        assert_eq!(s.fts_query(), "\"a\" \"b\" \"or\"");
        let e = q("ok ---").unwrap_err();
        assert!(
            e.to_string().contains("\"---\" has no letters or digits"),
            "{e}"
        );
    }

    #[test]
    fn priority_bounds_are_checked_and_ordered() {
        let r = LogsRequest {
            priority_min: Some(4),
            priority_max: Some(3),
            ..Default::default()
        };
        assert_eq!(LogQuery::from_request(&r).unwrap().priority, Some((3, 4)));
        let r = LogsRequest {
            priority_max: Some(9),
            ..Default::default()
        };
        assert!(LogQuery::from_request(&r).is_err());
    }
}
