//! `jrctl logs`: flags to a `LogsRequest`, the response stream to stdout.
//!
//! Results cut at the server's page limit are continued with their resume
//! token. A follow stream that breaks after the stored part was printed is
//! reopened after the highest entry id printed, so a reconnect neither
//! skips nor repeats an entry.

use crate::args::{LogsArgs, Output};
use crate::client::{self, Client};
use crate::output::Formatter;
use anyhow::{bail, Context as _};
use jr_proto::v1::{boot_selector, BootSelector, FieldMatch, LogsRequest};
use std::io::{IsTerminal as _, Write};
use std::time::Duration;

/// Reconnect attempts of a broken follow stream before giving up.
const FOLLOW_RETRIES: u32 = 30;
const FOLLOW_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A checked `jrctl logs` invocation.
pub struct Plan {
    pub request: LogsRequest,
    pub output: Output,
    pub quiet: bool,
}

/// journalctl's rule: a pattern with capitals is case-sensitive.
fn has_upper(pattern: &str) -> bool {
    pattern.chars().any(char::is_uppercase)
}

fn parse_boot(s: &str) -> anyhow::Result<BootSelector> {
    let compact: String = s.chars().filter(|c| *c != '-').collect();
    let kind = if compact.len() == 32 && compact.bytes().all(|b| b.is_ascii_hexdigit()) {
        boot_selector::Kind::BootId(compact.to_ascii_lowercase())
    } else if let Ok(n) = s.parse::<i32>() {
        boot_selector::Kind::Offset(n)
    } else {
        bail!(
            "invalid --boot {s:?}: expected a boot id (32 hex digits) or an offset such as 0 or -1"
        );
    };
    Ok(BootSelector { kind: Some(kind) })
}

fn parse_match(m: &str) -> anyhow::Result<FieldMatch> {
    let Some((name, value)) = m.split_once('=') else {
        bail!("invalid match {m:?}: expected FIELD=VALUE");
    };
    if !jr_journal::fields::is_valid_name(name.as_bytes()) {
        bail!("invalid field name {name:?} in match {m:?}: use A-Z, 0-9 and _");
    }
    Ok(FieldMatch {
        name: name.to_owned(),
        value: value.as_bytes().to_vec(),
    })
}

impl Plan {
    pub fn from_args(a: &LogsArgs) -> anyhow::Result<Plan> {
        if a.reverse && a.follow {
            bail!("--reverse and --follow cannot be combined");
        }
        let (priority_min, priority_max) = match &a.priority {
            Some(p) => {
                let (lo, hi) = jr_journal::priority::parse_range(p)
                    .with_context(|| format!("invalid --priority {p:?}"))?;
                (Some(u32::from(lo)), Some(u32::from(hi)))
            }
            None => (None, None),
        };
        let since_usec = a
            .since
            .as_deref()
            .map(crate::time::parse)
            .transpose()
            .context("invalid --since")?;
        let until_usec = a
            .until
            .as_deref()
            .map(crate::time::parse)
            .transpose()
            .context("invalid --until")?;
        let grep = a.grep.clone().unwrap_or_default();
        let grep_case_insensitive = match a.case_sensitive {
            Some(sensitive) => !sensitive,
            None => !has_upper(&grep),
        };
        let limit = match (a.lines, a.follow) {
            (Some(n), _) => n,
            // journalctl -f starts with the last 10 lines.
            (None, true) => 10,
            (None, false) => 0,
        };
        let request = LogsRequest {
            hosts: a.hosts.clone(),
            units: a.units.clone(),
            containers: a.containers.clone(),
            identifiers: a.identifiers.clone(),
            priority_min,
            priority_max,
            matches: a
                .matches
                .iter()
                .map(|m| parse_match(m))
                .collect::<Result<_, _>>()?,
            boot: a.boot.as_deref().map(parse_boot).transpose()?,
            since_usec,
            until_usec,
            grep,
            grep_case_insensitive,
            search: a.search.clone().unwrap_or_default(),
            limit,
            reverse: a.reverse,
            resume_token: String::new(),
            follow: a.follow,
            follow_after_id: 0,
        };
        Ok(Plan {
            request,
            output: a.output,
            quiet: a.quiet,
        })
    }
}

/// Where a follower stands.
#[derive(Default)]
struct Progress {
    printed: u64,
    /// Set once the stored part is done: the highest id printed since.
    follow_after: Option<i64>,
}

/// Runs the plan, printing to stdout.
pub async fn run(c: &mut Client, plan: Plan) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let tz = jiff::tz::TimeZone::system();
    let fmt = Formatter::new(plan.output, tz, stdout.is_terminal());
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut progress = Progress::default();
    let mut request = plan.request.clone();
    let mut retries = 0;
    loop {
        match stream(c, request.clone(), &fmt, &mut out, &mut progress).await {
            Ok(Some(token)) => request.resume_token = token,
            Ok(None) => break,
            Err(e) if is_broken_pipe(&e) => return Ok(()),
            Err(e) => {
                let after = progress.follow_after;
                let status = e.downcast_ref::<tonic::Status>();
                let retry = request.follow
                    && after.is_some()
                    && status.is_some_and(client::retriable)
                    && retries < FOLLOW_RETRIES;
                if !retry {
                    return Err(e);
                }
                retries += 1;
                let wait =
                    Duration::from_millis(200 * 2u64.pow(retries.min(5))).min(FOLLOW_BACKOFF_MAX);
                eprintln!("jrctl: {}; reconnecting in {wait:?}", crate::one_line(&e));
                tokio::time::sleep(wait).await;
                request.follow_after_id = after.unwrap_or_default();
            }
        }
    }
    if progress.printed == 0 && !plan.quiet && fmt.is_text() && !request.follow {
        let _ = writeln!(out, "-- No entries --");
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// One call; returns the resume token when the server cut the result.
async fn stream(
    c: &mut Client,
    request: LogsRequest,
    fmt: &Formatter,
    out: &mut impl Write,
    progress: &mut Progress,
) -> anyhow::Result<Option<String>> {
    let mut s = c.logs(request).await?.into_inner();
    let mut buf = Vec::new();
    let mut token = None;
    while let Some(r) = s.message().await? {
        if let Some(after) = r.following_after {
            progress.follow_after = Some(progress.follow_after.unwrap_or(after).max(after));
        }
        buf.clear();
        for e in &r.entries {
            fmt.write(e, &mut buf);
            if let Some(after) = progress.follow_after.as_mut() {
                *after = (*after).max(e.id);
            }
        }
        progress.printed += r.entries.len() as u64;
        out.write_all(&buf)?;
        if progress.follow_after.is_some() {
            out.flush()?;
        }
        if !r.resume_token.is_empty() {
            token = Some(r.resume_token);
        }
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_selectors() {
        assert_eq!(
            parse_boot("-1").unwrap().kind,
            Some(boot_selector::Kind::Offset(-1))
        );
        assert_eq!(
            parse_boot("0").unwrap().kind,
            Some(boot_selector::Kind::Offset(0))
        );
        let id = "0123456789abcdef0123456789ABCDEF";
        assert_eq!(
            parse_boot(id).unwrap().kind,
            Some(boot_selector::Kind::BootId(id.to_ascii_lowercase()))
        );
        assert!(parse_boot("yesterday").is_err());
    }

    #[test]
    fn matches_and_case_rule() {
        assert_eq!(parse_match("_PID=1").unwrap().value, b"1");
        assert_eq!(parse_match("A=b=c").unwrap().value, b"b=c");
        assert!(parse_match("nope").is_err());
        assert!(parse_match("lower=1").is_err());
        assert!(has_upper("Fail"));
        assert!(!has_upper("fail.*\\d"));
    }
}
