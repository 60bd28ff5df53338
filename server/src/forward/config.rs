//! Routes as written in the server's TOML config file (`[[routes]]`
//! tables), checked while they are parsed.
//!
//! Every value that can be wrong (a token, a glob, a regular expression, a
//! template, a time) is a type whose `Deserialize` validates it, so a
//! mistake is reported by the TOML parser with the file's line and column
//! and a message naming the key. Compiled forms (glob sets, regexes,
//! templates) sit beside their source text; two routes are "the same" when
//! their source text is, which is what a reload compares.

use super::template::Template;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Logentries' default data endpoint.
pub const DEFAULT_HOST: &str = "data.logentries.com";
/// Logentries' TLS port.
pub const TLS_PORT: u16 = 443;
/// Logentries' plain TCP port (514 and 10000 work too).
pub const PLAIN_PORT: u16 = 80;

/// Every route of the config file, with unique names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteList(pub Vec<RouteConfig>);

impl<'de> Deserialize<'de> for RouteList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let routes = Vec::<RouteConfig>::deserialize(d)?;
        let mut seen = std::collections::HashSet::new();
        for r in &routes {
            if !seen.insert(r.name.as_str()) {
                return Err(serde::de::Error::custom(format!(
                    "routes: two routes are named {:?}; names must be unique",
                    r.name
                )));
            }
        }
        Ok(RouteList(routes))
    }
}

/// One route: which entries, where to, and how each line looks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteConfig {
    /// Unique name; the route's position in the database is kept under it,
    /// so renaming a route starts it afresh.
    pub name: RouteName,
    /// Which entries the route sends (everything when empty).
    #[serde(default)]
    pub filter: FilterConfig,
    /// Where the lines go.
    pub destination: Destination,
    /// The line sent for each entry (see [`Template`]).
    #[serde(default)]
    pub template: Template,
    /// Where a route without a saved position begins: `now` (default:
    /// entries stored from now on) or a time (RFC 3339, for example
    /// `2024-05-01T10:00:00Z`): entries from that time on.
    #[serde(default)]
    pub start: Start,
}

/// A route name: letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteName(String);

impl RouteName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RouteName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RouteName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "name {s:?}: use 1 to 128 letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(RouteName(s))
    }
}

/// Which entries a route takes. Lists are ORed within a key and keys are
/// ANDed, like journalctl's options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FilterConfig {
    /// Globs on the hostname or the machine id.
    #[serde(default)]
    pub hosts: Globs,
    /// Globs on the unit, with journalctl's `-u` meaning: the unit that
    /// logged or the unit systemd logs about.
    #[serde(default)]
    pub units: Globs,
    /// Globs on the Docker container name (CONTAINER_NAME).
    #[serde(default)]
    pub containers: Globs,
    /// A priority level (`err`: that and more important) or a range
    /// (`err..warning`, `0..4`).
    #[serde(default)]
    pub priority: Option<PriorityRange>,
    /// Globs on the syslog identifier (SYSLOG_IDENTIFIER, else _COMM).
    #[serde(default)]
    pub identifiers: Globs,
    /// A regular expression the message must match.
    #[serde(default)]
    pub message: Option<MessageRegex>,
}

impl FilterConfig {
    /// True when `row` passes every key of the filter.
    pub fn matches(&self, row: &super::store::Row) -> bool {
        self.hosts
            .allows_any(&[Some(row.host.as_str()), Some(row.machine_id.as_str())])
            && self
                .units
                .allows_any(&[row.unit.as_deref(), row.about_unit.as_deref()])
            && self.containers.allows(row.container.as_deref())
            && self.identifiers.allows(row.identifier.as_deref())
            && self.priority.as_ref().is_none_or(|p| {
                row.priority
                    .is_some_and(|level| (p.min..=p.max).contains(&level))
            })
            && self.message.as_ref().is_none_or(|re| {
                row.message
                    .as_deref()
                    .is_some_and(|m| re.0.is_match(&String::from_utf8_lossy(m)))
            })
    }
}

/// A list of globs, compiled.
#[derive(Debug, Clone, Default)]
pub struct Globs {
    pub patterns: Vec<String>,
    pub set: Option<GlobSet>,
}

impl PartialEq for Globs {
    fn eq(&self, o: &Self) -> bool {
        self.patterns == o.patterns
    }
}

impl Globs {
    /// True when there is no pattern or `value` matches one.
    pub fn allows(&self, value: Option<&str>) -> bool {
        match &self.set {
            None => true,
            Some(set) => value.is_some_and(|v| set.is_match(v)),
        }
    }

    /// True when there is no pattern or one of `values` matches.
    pub fn allows_any(&self, values: &[Option<&str>]) -> bool {
        match &self.set {
            None => true,
            Some(set) => values.iter().flatten().any(|v| set.is_match(v)),
        }
    }
}

impl<'de> Deserialize<'de> for Globs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patterns = Vec::<String>::deserialize(d)?;
        if patterns.is_empty() {
            return Ok(Globs::default());
        }
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            let g =
                Glob::new(p).map_err(|e| serde::de::Error::custom(format!("glob {p:?}: {e}")))?;
            b.add(g);
        }
        let set = b
            .build()
            .map_err(|e| serde::de::Error::custom(format!("globs: {e}")))?;
        Ok(Globs {
            patterns,
            set: Some(set),
        })
    }
}

/// An inclusive range of syslog levels.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityRange {
    pub source: String,
    pub min: u8,
    pub max: u8,
}

impl<'de> Deserialize<'de> for PriorityRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        let (min, max) = jr_journal::priority::parse_range(&source)
            .map_err(|e| serde::de::Error::custom(format!("priority: {e}")))?;
        Ok(PriorityRange { source, min, max })
    }
}

/// A compiled message regex.
#[derive(Debug, Clone)]
pub struct MessageRegex(pub regex::Regex);

impl PartialEq for MessageRegex {
    fn eq(&self, o: &Self) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

impl<'de> Deserialize<'de> for MessageRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s)
            .map(MessageRegex)
            .map_err(|e| serde::de::Error::custom(format!("message regex {s:?}: {e}")))
    }
}

/// A Logentries destination.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Destination {
    /// The log's token (a UUID). Logentries drops lines with a wrong token
    /// without a word, so its shape is checked here.
    pub token: Token,
    /// `host` or `host:port`; the port defaults to 443 with TLS and 80
    /// without (Logentries also takes plain TCP on 514 and 10000).
    #[serde(default)]
    pub endpoint: Option<HostPort>,
    /// TLS (default) or plain TCP.
    #[serde(default = "yes")]
    pub tls: bool,
    /// PEM file of extra certificate authorities trusted besides the
    /// system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

impl Destination {
    /// The host name and port to connect to.
    pub fn host_port(&self) -> (String, u16) {
        let default_port = if self.tls { TLS_PORT } else { PLAIN_PORT };
        match &self.endpoint {
            Some(e) => (e.host.clone(), e.port.unwrap_or(default_port)),
            None => (DEFAULT_HOST.to_owned(), default_port),
        }
    }

    /// How the destination is shown to operators (never the token).
    pub fn describe(&self) -> String {
        let (h, p) = self.host_port();
        let scheme = if self.tls { "tls" } else { "tcp" };
        format!("logentries+{scheme}://{h}:{p}")
    }
}

/// `host` or `host:port` (`[v6]:port` for IPv6 addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        split_endpoint(&s).map_err(serde::de::Error::custom)
    }
}

fn split_endpoint(raw: &str) -> Result<HostPort, String> {
    let (host, port) = match raw.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
            let port =
                p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    format!("endpoint {raw:?}: port {p:?} is not a number 1-65535")
                })?;
            (h.trim_start_matches('[').trim_end_matches(']'), Some(port))
        }
        _ => (raw, None),
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("endpoint {raw:?}: expected host or host:port"));
    }
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

/// A Logentries log token: a UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token is a credential: only its first group is shown.
        write!(f, "Token({}-…)", &self.0[..8])
    }
}

impl std::str::FromStr for Token {
    type Err = String;
    fn from_str(s: &str) -> Result<Token, String> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        let ok = groups.len() == lens.len()
            && groups
                .iter()
                .zip(lens)
                .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(
                "token: not a Logentries token; expected a UUID like 2bfbea1e-10c3-4419-bdad-7e6435882e1f"
                    .to_owned(),
            );
        }
        Ok(Token(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Where a new route starts.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Start {
    /// After the newest entry stored when the route first runs.
    #[default]
    Now,
    /// At the first entry stored with this time or later.
    Since(jiff::Timestamp),
}

impl<'de> Deserialize<'de> for Start {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "now" {
            return Ok(Start::Now);
        }
        s.parse::<jiff::Timestamp>().map(Start::Since).map_err(|e| {
            serde::de::Error::custom(format!(
                "start {s:?}: expected \"now\" or an RFC 3339 time like 2024-05-01T10:00:00Z ({e})"
            ))
        })
    }
}

#[derive(Debug, Error)]
pub enum RoutesFileError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

/// Reads the routes of a config file again (SIGHUP). The whole file is
/// parsed as the server's configuration (which holds the routes), so a
/// file the server would refuse at start-up is refused here too.
pub fn load_routes(path: &Path) -> Result<RouteList, RoutesFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| RoutesFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse = |source| RoutesFileError::Parse {
        path: path.to_owned(),
        source,
    };
    let config: crate::config::ServerConfig = toml::from_str(&text).map_err(parse)?;
    Ok(config.routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RouteList, String> {
        toml::from_str::<crate::config::ServerConfig>(text)
            .map(|c| c.routes)
            .map_err(|e| e.to_string())
    }

    const TOKEN: &str = "2bfbea1e-10c3-4419-bdad-7e6435882e1f";

    #[test]
    fn minimal_route_takes_defaults() {
        let r = parse(&format!(
            "[[routes]]\nname = \"all\"\ndestination = {{ token = \"{TOKEN}\" }}\n"
        ))
        .unwrap();
        let r = &r.0[0];
        assert!(r.destination.tls);
        assert_eq!(r.destination.host_port(), (DEFAULT_HOST.to_owned(), 443));
        assert_eq!(r.start, Start::Now);
        assert_eq!(r.template.source(), super::super::template::DEFAULT);
    }

    #[test]
    fn endpoints_take_ports() {
        let hp = |h: &str, p| HostPort {
            host: h.to_owned(),
            port: p,
        };
        assert_eq!(
            split_endpoint("eu.data.logs.insight.rapid7.com:10000").unwrap(),
            hp("eu.data.logs.insight.rapid7.com", Some(10000))
        );
        assert_eq!(split_endpoint("[::1]:514").unwrap(), hp("::1", Some(514)));
        assert_eq!(
            split_endpoint("example.com").unwrap(),
            hp("example.com", None)
        );
        assert!(split_endpoint("host:0").is_err());
        assert!(split_endpoint("host:x").is_err());
        assert!(split_endpoint("").is_err());
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse(&format!(
            "[[routes]]\nname = \"a\"\ndestination = {{ token = \"{TOKEN}\", tsl = false }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("line 3") && e.contains("tsl"), "{e}");
        let e = parse("[[routes]]\nname = \"a\"\ndestination = { token = \"abc\" }\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("token"), "{e}");
        let e = parse(&format!(
            "[[routes]]\nname = \"a\"\ndestination = {{ token = \"{TOKEN}\" }}\ntemplate = \"{{host}} {{nope}}\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("line 4") && e.contains("{nope}"), "{e}");
        let e = parse(&format!(
            "[[routes]]\nname = \"a\"\ndestination = {{ token = \"{TOKEN}\" }}\n\
             [[routes]]\nname = \"a\"\ndestination = {{ token = \"{TOKEN}\" }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("two routes are named"), "{e}");
    }

    #[test]
    fn tokens_must_be_uuids() {
        assert!(TOKEN.parse::<Token>().is_ok());
        assert!("2bfbea1e10c34419bdad7e6435882e1f".parse::<Token>().is_err());
        assert!("2bfbea1e-10c3-4419-bdad-7e6435882e1g"
            .parse::<Token>()
            .is_err());
        assert!(format!("{TOKEN}-").parse::<Token>().is_err());
    }
}
