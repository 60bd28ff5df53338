//! Which entries are shipped: unit globs, a maximum priority and field
//! matches, with journalctl's meaning.
//!
//! - `--unit X` keeps an entry whose unit *or* about-unit matches `X`, as
//!   `journalctl -u` shows "Started X" (written by PID 1, about `X`).
//!   `--exclude-unit` drops an entry when either label matches, and wins
//!   over `--unit`.
//! - `--priority P` keeps entries with `PRIORITY` 0..=P; like journalctl,
//!   an entry without a valid `PRIORITY` does not match.
//! - `--match F=V`: values of one field are alternatives, different fields
//!   must all match; an entry matches a field when any of its occurrences
//!   equals one of the values, byte for byte.
//!
//! Filtered entries are not shipped, but their cursors still advance the
//! position (see `batch`).
//!
//! A filter depends on a few fields only ([`FieldFilter::needs`]), so the
//! native reader can decide before it decodes the rest of an entry.

use globset::{Glob, GlobSet, GlobSetBuilder};
use jr_journal::labels::Labels;
use jr_journal::{fields, priority, Entry, Field};
use jr_journal_file::FieldFilter;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FilterError {
    #[error("invalid unit glob {glob:?}: {reason}")]
    Glob { glob: String, reason: String },
    #[error("invalid --priority: {0}")]
    Priority(#[from] priority::PriorityError),
    #[error("invalid --match {0:?}: expected FIELD=VALUE")]
    MatchSyntax(String),
    #[error("invalid --match {0:?}: {1:?} is not a journal field name (A-Z, 0-9, _)")]
    MatchField(String, String),
}

/// A compiled filter; the default keeps everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    max_priority: Option<u8>,
    /// One group per field name, in first-seen order: (field, accepted values).
    matches: Vec<(String, Vec<Vec<u8>>)>,
}

fn glob_set(globs: &[String]) -> Result<Option<GlobSet>, FilterError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| FilterError::Glob {
            glob: g.clone(),
            reason: e.kind().to_string(),
        })?;
        b.add(glob);
    }
    b.build().map(Some).map_err(|e| FilterError::Glob {
        glob: globs.join(" "),
        reason: e.to_string(),
    })
}

impl Filter {
    pub fn new(
        units: &[String],
        exclude_units: &[String],
        max_priority: Option<&str>,
        matches: &[String],
    ) -> Result<Filter, FilterError> {
        let mut groups: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
        for m in matches {
            let (name, value) = m
                .split_once('=')
                .ok_or_else(|| FilterError::MatchSyntax(m.clone()))?;
            if !fields::is_valid_name(name.as_bytes()) {
                return Err(FilterError::MatchField(m.clone(), name.to_owned()));
            }
            let value = value.as_bytes().to_vec();
            match groups.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(value),
                None => groups.push((name.to_owned(), vec![value])),
            }
        }
        Ok(Filter {
            include: glob_set(units)?,
            exclude: glob_set(exclude_units)?,
            max_priority: max_priority.map(priority::parse).transpose()?,
            matches: groups,
        })
    }

    /// Whether the filter lets every entry through.
    pub fn is_empty(&self) -> bool {
        self.include.is_none()
            && self.exclude.is_none()
            && self.max_priority.is_none()
            && self.matches.is_empty()
    }

    /// Whether `entry` is to be shipped.
    pub fn accepts(&self, entry: &Entry) -> bool {
        self.accepts_fields(&entry.fields)
    }

    /// Whether an entry with `fields` is to be shipped. Only the fields
    /// [`FieldFilter::needs`] names matter: the answer is the same for all
    /// of an entry's fields and for just those, in the same order.
    pub fn accepts_fields(&self, entry_fields: &[Field]) -> bool {
        if self.is_empty() {
            return true;
        }
        let labels = Labels::of(entry_fields);
        let units = [labels.unit, labels.about_unit];
        let any_unit = |set: &GlobSet| units.iter().flatten().any(|u| set.is_match(u));
        if let Some(ex) = &self.exclude {
            if any_unit(ex) {
                return false;
            }
        }
        if let Some(inc) = &self.include {
            if !any_unit(inc) {
                return false;
            }
        }
        if let Some(max) = self.max_priority {
            if labels.priority.is_none_or(|p| p > max) {
                return false;
            }
        }
        self.matches.iter().all(|(name, values)| {
            entry_fields
                .iter()
                .any(|f| f.name == *name && values.iter().any(|v| f.value[..] == v[..]))
        })
    }
}

/// The native reader decodes these fields first and the rest of an entry
/// only when the filter keeps it.
impl FieldFilter for Filter {
    fn needs(&self, name: &str) -> bool {
        let units = self.include.is_some() || self.exclude.is_some();
        (units && (UNIT_LABEL_FIELDS.contains(&name) || fields::ABOUT_UNIT_FIELDS.contains(&name)))
            || (self.max_priority.is_some() && name == fields::PRIORITY)
            || self.matches.iter().any(|(n, _)| n == name)
    }

    fn accepts(&self, fields: &[Field]) -> bool {
        self.accepts_fields(fields)
    }
}

/// The fields the unit label is taken from (see [`Labels`]).
const UNIT_LABEL_FIELDS: [&str; 3] = [
    fields::SYSTEMD_UNIT,
    fields::SYSTEMD_USER_UNIT,
    fields::SYSLOG_IDENTIFIER,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &[u8])]) -> Entry {
        Entry {
            cursor: "c".into(),
            realtime_usec: 1,
            monotonic_usec: 1,
            fields: fields
                .iter()
                .map(|(n, v)| Field {
                    name: (*n).to_owned().into(),
                    value: bytes::Bytes::copy_from_slice(v),
                })
                .collect(),
        }
    }

    fn filter(units: &[&str], exclude: &[&str], prio: Option<&str>, m: &[&str]) -> Filter {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Filter::new(&s(units), &s(exclude), prio, &s(m)).unwrap()
    }

    #[test]
    fn empty_filter_keeps_everything() {
        let f = Filter::default();
        assert!(f.is_empty());
        assert!(f.accepts(&entry(&[])));
    }

    #[test]
    fn unit_globs_match_unit_or_about_unit() {
        let f = filter(&["nginx*.service"], &[], None, &[]);
        assert!(f.accepts(&entry(&[("_SYSTEMD_UNIT", b"nginx.service")])));
        assert!(f.accepts(&entry(&[("_SYSTEMD_UNIT", b"nginx-proxy.service")])));
        // systemd's "Started nginx.service." is about nginx, written by PID 1.
        assert!(f.accepts(&entry(&[
            ("_SYSTEMD_UNIT", b"init.scope"),
            ("UNIT", b"nginx.service"),
        ])));
        assert!(!f.accepts(&entry(&[("_SYSTEMD_UNIT", b"cron.service")])));
        assert!(!f.accepts(&entry(&[("MESSAGE", b"no unit")])));
        // The syslog identifier stands in for the unit.
        assert!(f.accepts(&entry(&[("SYSLOG_IDENTIFIER", b"nginx.service")])));
    }

    #[test]
    fn exclusion_wins_and_sees_both_labels() {
        let f = filter(&["*.service"], &["noisy.service"], None, &[]);
        assert!(f.accepts(&entry(&[("_SYSTEMD_UNIT", b"quiet.service")])));
        assert!(!f.accepts(&entry(&[("_SYSTEMD_UNIT", b"noisy.service")])));
        assert!(!f.accepts(&entry(&[
            ("_SYSTEMD_UNIT", b"init.scope"),
            ("UNIT", b"noisy.service"),
        ])));
        let only_exclude = filter(&[], &["noisy.service"], None, &[]);
        assert!(only_exclude.accepts(&entry(&[("MESSAGE", b"x")])));
    }

    #[test]
    fn priority_is_a_maximum_level() {
        let f = filter(&[], &[], Some("warning"), &[]);
        assert!(f.accepts(&entry(&[("PRIORITY", b"0")])));
        assert!(f.accepts(&entry(&[("PRIORITY", b"4")])));
        assert!(!f.accepts(&entry(&[("PRIORITY", b"5")])));
        assert!(!f.accepts(&entry(&[("PRIORITY", b"x")])));
        assert!(!f.accepts(&entry(&[("MESSAGE", b"no priority")])));
        assert!(filter(&[], &[], Some("3"), &[]).accepts(&entry(&[("PRIORITY", b"3")])));
    }

    #[test]
    fn matches_or_within_a_field_and_across_fields() {
        let f = filter(
            &[],
            &[],
            None,
            &["_TRANSPORT=journal", "_TRANSPORT=syslog", "_UID=0"],
        );
        assert!(f.accepts(&entry(&[("_TRANSPORT", b"journal"), ("_UID", b"0")])));
        assert!(f.accepts(&entry(&[("_TRANSPORT", b"syslog"), ("_UID", b"0")])));
        assert!(!f.accepts(&entry(&[("_TRANSPORT", b"kernel"), ("_UID", b"0")])));
        assert!(!f.accepts(&entry(&[("_TRANSPORT", b"journal")])));
        // Any occurrence of a repeated field may match.
        assert!(f.accepts(&entry(&[
            ("_TRANSPORT", b"kernel"),
            ("_TRANSPORT", b"journal"),
            ("_UID", b"0"),
        ])));
        // Values compare byte for byte; an empty value matches an empty field.
        let e = filter(&[], &[], None, &["TAG="]);
        assert!(e.accepts(&entry(&[("TAG", b"")])));
        assert!(!e.accepts(&entry(&[("TAG", b" ")])));
        let eq = filter(&[], &[], None, &["MESSAGE=a=b"]);
        assert!(eq.accepts(&entry(&[("MESSAGE", b"a=b")])));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let e = Filter::new(&s(&["a[b"]), &[], None, &[]).unwrap_err();
        assert!(e.to_string().contains("a[b"));
        let e = Filter::new(&[], &[], Some("verbose"), &[]).unwrap_err();
        assert!(e.to_string().contains("verbose"));
        let e = Filter::new(&[], &[], None, &s(&["NOEQUALS"])).unwrap_err();
        assert!(e.to_string().contains("FIELD=VALUE"));
        let e = Filter::new(&[], &[], None, &s(&["=x"])).unwrap_err();
        assert!(matches!(e, FilterError::MatchField(..)));
    }
}
