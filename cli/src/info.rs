//! `jrctl hosts`, `jrctl units` and `jrctl stats`: small tables.

use crate::client::Client;
use crate::output::short::format_bytes;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use jr_proto::v1::{HostsRequest, StatsRequest, UnitsRequest};
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

pub async fn hosts(c: &mut Client) -> anyhow::Result<()> {
    let hosts = c.hosts(HostsRequest {}).await?.into_inner().hosts;
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.hostname.clone(),
                h.machine_id.clone(),
                h.entries.to_string(),
                time(h.first_entry_usec),
                time(h.last_entry_usec),
                time(h.last_contact_usec),
                if h.connected { "yes" } else { "no" }.to_owned(),
                h.gap_entries.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "HOST",
                "MACHINE ID",
                "ENTRIES",
                "FIRST ENTRY",
                "LAST ENTRY",
                "LAST CONTACT",
                "CONNECTED",
                "GAPS"
            ],
            &rows
        )
    );
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
}
