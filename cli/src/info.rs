//! `jrctl hosts`, `jrctl gaps`, `jrctl units` and `jrctl stats`: small
//! tables (and JSON lines for hosts and gaps).

use crate::args::{GapsArgs, HostsArgs, InfoOutput};
use crate::client::Client;
use crate::output::short::format_bytes;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use jr_proto::v1::{
    GapInfo, GapsRequest, HostInfo, HostState, HostsRequest, StatsRequest, UnitsRequest,
};
use std::fmt::Write as _;

fn time(usec: u64) -> String {
    if usec == 0 {
        return "-".to_owned();
    }
    match Timestamp::from_microsecond(i64::try_from(usec).unwrap_or(i64::MAX)) {
        Ok(ts) => ts
            .to_zoned(TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => format!("@{usec}"),
    }
}

/// Left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn state_name(state: i32) -> &'static str {
    match HostState::try_from(state) {
        Ok(HostState::Ok) => "ok",
        Ok(HostState::Stalled) => "stalled",
        Ok(HostState::Silent) => "silent",
        Ok(HostState::Disconnected) => "disconnected",
        _ => "-",
    }
}

/// A lag as journalctl-like short text: `0`, `350ms`, `12s`, `3m05s`,
/// `2h10m`, `4d3h`.
pub fn lag_text(usec: u64) -> String {
    let s = usec / 1_000_000;
    match s {
        0 if usec == 0 => "0".to_owned(),
        0 => format!("{}ms", usec / 1000),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

fn host_json(h: &HostInfo) -> serde_json::Value {
    serde_json::json!({
        "hostname": h.hostname,
        "machine_id": h.machine_id,
        "state": state_name(h.state),
        "connected": h.connected,
        "entries": h.entries,
        "first_entry_usec": h.first_entry_usec,
        "last_entry_usec": h.last_entry_usec,
        "last_contact_usec": h.last_contact_usec,
        "cursor": h.cursor,
        "head_cursor": h.head_cursor,
        "head_realtime_usec": h.head_realtime_usec,
        "head_reported_usec": h.head_reported_usec,
        "committed_realtime_usec": h.committed_realtime_usec,
        "lag_usec": h.lag_usec,
        "entries_behind": (h.entries_behind >= 0).then_some(h.entries_behind),
        "behind_since_usec": h.behind_since_usec,
        "vacuumed_entries": h.gap_entries,
        "suppressed_entries": h.suppressed_entries,
        "boot_id": h.boot_id,
        "agent_version": h.agent_version,
    })
}

pub async fn hosts(c: &mut Client, a: &HostsArgs) -> anyhow::Result<()> {
    let hosts = c.hosts(HostsRequest {}).await?.into_inner().hosts;
    if a.output == InfoOutput::Json {
        for h in &hosts {
            println!("{}", host_json(h));
        }
    } else {
        print!("{}", hosts_table(&hosts));
    }
    if a.gaps {
        let gaps = c.gaps(GapsRequest::default()).await?.into_inner().gaps;
        print_gaps(&gaps, a.output);
    }
    Ok(())
}

/// The `jrctl hosts` table.
pub fn hosts_table(hosts: &[HostInfo]) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.hostname.clone(),
                h.machine_id.clone(),
                state_name(h.state).to_owned(),
                h.entries.to_string(),
                time(h.first_entry_usec),
                time(h.last_entry_usec),
                time(h.last_contact_usec),
                if h.connected { "yes" } else { "no" }.to_owned(),
                if h.head_reported_usec == 0 {
                    "-".to_owned()
                } else {
                    lag_text(h.lag_usec)
                },
                if h.entries_behind < 0 {
                    "-".to_owned()
                } else {
                    h.entries_behind.to_string()
                },
                (h.gap_entries + h.suppressed_entries).to_string(),
            ]
        })
        .collect();
    table(
        &[
            "HOST",
            "MACHINE ID",
            "STATE",
            "ENTRIES",
            "FIRST ENTRY",
            "LAST ENTRY",
            "LAST CONTACT",
            "CONNECTED",
            "LAG",
            "BEHIND",
            "LOST",
        ],
        &rows,
    )
}

fn print_gaps(gaps: &[GapInfo], output: InfoOutput) {
    if output == InfoOutput::Json {
        for g in gaps {
            let v = serde_json::json!({
                "hostname": g.hostname,
                "machine_id": g.machine_id,
                "unit": (!g.unit.is_empty()).then_some(&g.unit),
                "realtime_usec": g.realtime_usec,
                "entries": g.entries,
                "kind": g.kind,
            });
            println!("{v}");
        }
        return;
    }
    let rows: Vec<Vec<String>> = gaps
        .iter()
        .map(|g| {
            vec![
                time(g.realtime_usec),
                g.hostname.clone(),
                if g.unit.is_empty() {
                    "-".to_owned()
                } else {
                    g.unit.clone()
                },
                g.kind.clone(),
                g.entries.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["TIME", "HOST", "UNIT", "KIND", "ENTRIES"], &rows)
    );
}

pub async fn gaps(c: &mut Client, a: &GapsArgs, since_usec: Option<u64>) -> anyhow::Result<()> {
    let gaps = c
        .gaps(GapsRequest {
            hosts: a.hosts.clone(),
            since_usec,
            limit: a.lines.unwrap_or(0),
        })
        .await?
        .into_inner()
        .gaps;
    print_gaps(&gaps, a.output);
    Ok(())
}

pub async fn units(c: &mut Client, hosts: Vec<String>) -> anyhow::Result<()> {
    let units = c.units(UnitsRequest { hosts }).await?.into_inner().units;
    let rows: Vec<Vec<String>> = units
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                u.entries.to_string(),
                time(u.last_entry_usec),
            ]
        })
        .collect();
    print!("{}", table(&["UNIT", "ENTRIES", "LAST ENTRY"], &rows));
    Ok(())
}

pub async fn stats(c: &mut Client) -> anyhow::Result<()> {
    let s = c.stats(StatsRequest {}).await?.into_inner();
    println!("entries:        {}", s.entries);
    println!("hosts:          {}", s.hosts);
    println!("units:          {}", s.units);
    println!("first entry:    {}", time(s.first_entry_usec));
    println!("last entry:     {}", time(s.last_entry_usec));
    println!(
        "database size:  {} ({} bytes)",
        format_bytes(s.database_bytes),
        s.database_bytes
    );
    println!("ingest rate:    {:.1} entries/s", s.ingest_rate);
    println!("last entry id:  {}", s.last_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x\n");
    }

    #[test]
    fn lags_read_short() {
        assert_eq!(lag_text(0), "0");
        assert_eq!(lag_text(350_000), "350ms");
        assert_eq!(lag_text(12_000_000), "12s");
        assert_eq!(lag_text(185_000_000), "3m05s");
        assert_eq!(lag_text(7_800_000_000), "2h10m");
        assert_eq!(lag_text(356_400_000_000), "4d3h");
    }

    #[test]
    fn hosts_table_shows_state_lag_and_losses() {
        let h = HostInfo {
            hostname: "web-1".into(),
            machine_id: "m".into(),
            state: HostState::Stalled as i32,
            connected: true,
            head_reported_usec: 1,
            lag_usec: 12_000_000,
            entries_behind: 40,
            gap_entries: 2,
            suppressed_entries: 5,
            ..HostInfo::default()
        };
        let t = hosts_table(&[h]);
        let row = t.lines().nth(1).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], "web-1");
        assert_eq!(cells[2], "stalled");
        assert_eq!(&cells[cells.len() - 3..], ["12s", "40", "7"]);
    }
}
