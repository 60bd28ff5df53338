//! Line templates: `{host} {unit}: {message}` and friends.
//!
//! A template is parsed once, when the config is read, into literal text
//! and placeholders; an unknown placeholder is a config error that names
//! it. `{{` and `}}` stand for literal braces. Placeholders:
//!
//! | placeholder | value |
//! | --- | --- |
//! | `{host}` | hostname of the node |
//! | `{machine_id}` | its machine id |
//! | `{unit}` | `_SYSTEMD_UNIT`, else `_SYSTEMD_USER_UNIT`, else `SYSLOG_IDENTIFIER` |
//! | `{about_unit}` | the unit systemd writes about (`UNIT`, …) |
//! | `{container}` | `CONTAINER_NAME` |
//! | `{identifier}` | `SYSLOG_IDENTIFIER`, else `_COMM` |
//! | `{priority}`, `{priority_name}` | `6`, `info` |
//! | `{timestamp}` | RFC 3339 in UTC, microseconds |
//! | `{timestamp_usec}` | microseconds since the epoch |
//! | `{timestamp_short}` | journalctl's short form in local time, `Nov 27 07:22:01` |
//! | `{message}` | the message (invalid UTF-8 replaced) |
//! | `{FIELD}` | any journal field by its name, `{_PID}`, `{CODE_FILE}` |
//!
//! A value the entry does not have is written as `-`.

use super::store::Row;
use serde::{Deserialize, Deserializer};
use std::fmt::Write as _;

/// The line the original pipeline sent.
pub const DEFAULT: &str = "{host} {unit}: {message}";

/// Written for a placeholder whose value the entry lacks.
const MISSING: &str = "-";

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Host,
    MachineId,
    Unit,
    AboutUnit,
    Container,
    Identifier,
    Priority,
    PriorityName,
    Timestamp,
    TimestampUsec,
    TimestampShort,
    Message,
    /// A journal field by name.
    Field(String),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// Some placeholder needs the entry's stored fields decoded.
    needs_fields: bool,
}

impl PartialEq for Template {
    fn eq(&self, o: &Self) -> bool {
        self.source == o.source
    }
}

impl Default for Template {
    fn default() -> Self {
        // The default parses; a failure here is a bug caught by the tests.
        Template::parse(DEFAULT).unwrap_or_else(|_| Template {
            source: DEFAULT.to_owned(),
            parts: Vec::new(),
            needs_fields: false,
        })
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Template::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl Template {
    /// Parses `source`; the error names the offending placeholder.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                text.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!(
                    "template {source:?}: unmatched '}}' (write '}}}}' for a brace)"
                ));
            }
            let Some(end) = tail.find('}') else {
                return Err(format!(
                    "template {source:?}: unclosed '{{' (write '{{{{' for a brace)"
                ));
            };
            let name = &tail[1..end];
            let part = match name {
                "host" => Part::Host,
                "machine_id" => Part::MachineId,
                "unit" => Part::Unit,
                "about_unit" => Part::AboutUnit,
                "container" => Part::Container,
                "identifier" => Part::Identifier,
                "priority" => Part::Priority,
                "priority_name" => Part::PriorityName,
                "timestamp" => Part::Timestamp,
                "timestamp_usec" => Part::TimestampUsec,
                "timestamp_short" => Part::TimestampShort,
                "message" => Part::Message,
                f if is_field_name(f) => Part::Field(f.to_owned()),
                other => {
                    return Err(format!(
                        "template {source:?}: unknown field {{{other}}}; use host, machine_id, unit, \
                         about_unit, container, identifier, priority, priority_name, timestamp, \
                         timestamp_usec, timestamp_short, message or a journal field name like {{_PID}}"
                    ))
                }
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(part);
            rest = &tail[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        let needs_fields = parts.iter().any(|p| matches!(p, Part::Field(_)));
        Ok(Template {
            source: source.to_owned(),
            parts,
            needs_fields,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Writes the line of `row` into `out` (cleared first).
    pub fn render(&self, row: &Row, out: &mut String) {
        out.clear();
        let fields = if self.needs_fields {
            row.fields()
        } else {
            Vec::new()
        };
        let opt = |out: &mut String, v: Option<&str>| out.push_str(v.unwrap_or(MISSING));
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Host => opt(out, Some(&row.host)),
                Part::MachineId => opt(out, Some(&row.machine_id)),
                Part::Unit => opt(out, row.unit.as_deref()),
                Part::AboutUnit => opt(out, row.about_unit.as_deref()),
                Part::Container => opt(out, row.container.as_deref()),
                Part::Identifier => opt(out, row.identifier.as_deref()),
                Part::Priority => match row.priority {
                    Some(p) => {
                        let _ = write!(out, "{p}");
                    }
                    None => out.push_str(MISSING),
                },
                Part::PriorityName => match row.priority {
                    Some(p) => out.push_str(jr_journal::priority::name(p)),
                    None => out.push_str(MISSING),
                },
                Part::Timestamp => match row.timestamp() {
                    Some(t) => {
                        let _ = write!(out, "{t:.6}");
                    }
                    None => out.push_str(MISSING),
                },
                Part::TimestampUsec => {
                    let _ = write!(out, "{}", row.realtime_usec);
                }
                Part::TimestampShort => match row.timestamp() {
                    Some(t) => {
                        let zoned = t.to_zoned(jiff::tz::TimeZone::system());
                        let _ = write!(out, "{}", zoned.strftime("%b %d %H:%M:%S"));
                    }
                    None => out.push_str(MISSING),
                },
                Part::Message => match &row.message {
                    Some(m) => out.push_str(&String::from_utf8_lossy(m)),
                    None => out.push_str(MISSING),
                },
                Part::Field(name) => match fields.iter().find(|f| f.name == *name) {
                    Some(f) => out.push_str(&String::from_utf8_lossy(&f.value)),
                    None => out.push_str(MISSING),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        let fields = vec![
            jr_proto::v1::Field {
                name: "_PID".into(),
                value: bytes::Bytes::from_static(b"42"),
            },
            jr_proto::v1::Field {
                name: "MESSAGE".into(),
                value: bytes::Bytes::from_static(b"hi \xff"),
            },
            jr_proto::v1::Field {
                name: "_BOOT_ID".into(),
                value: bytes::Bytes::from_static(b"b0"),
            },
            jr_proto::v1::Field {
                name: "_MACHINE_ID".into(),
                value: bytes::Bytes::from_static(b"m"),
            },
        ];
        let mut blob = Vec::new();
        let values = jr_journal::stored::RowValues {
            message: Some(b"hi \xff"),
            boot_id: Some(b"b0"),
            machine_id: Some(b"m"),
        };
        jr_journal::stored::encode_fields(&fields, &values, &mut blob);
        Row {
            id: 1,
            host: "web".into(),
            machine_id: "m".into(),
            boot_id: Some("b0".into()),
            unit: Some("nginx.service".into()),
            about_unit: None,
            container: None,
            identifier: Some("nginx".into()),
            priority: Some(3),
            realtime_usec: 1_700_000_000_000_001,
            message: Some(b"hi \xff".to_vec()),
            fields: blob,
        }
    }

    fn render(t: &str) -> String {
        let mut out = String::new();
        Template::parse(t).unwrap().render(&row(), &mut out);
        out
    }

    #[test]
    fn default_is_host_unit_message() {
        assert_eq!(render(DEFAULT), "web nginx.service: hi \u{fffd}");
    }

    #[test]
    fn every_placeholder_renders() {
        assert_eq!(
            render(
                "{{{priority}/{priority_name}}} {_PID} {container} {timestamp} {timestamp_usec} \
                 {_BOOT_ID} {_MACHINE_ID}"
            ),
            "{3/err} 42 - 2023-11-14T22:13:20.000001Z 1700000000000001 b0 m"
        );
        assert_eq!(render("{timestamp_short}").len(), "Nov 14 22:13:20".len());
    }

    #[test]
    fn unknown_placeholders_are_named() {
        let e = Template::parse("{host} {hostname}").unwrap_err();
        assert!(e.contains("{hostname}"), "{e}");
        assert!(Template::parse("{host").is_err());
        assert!(Template::parse("host}").is_err());
    }
}
