//! The figures of one side of the ingest benchmark and the table that
//! puts both sides and their ratio next to each other.

use crate::procs::Memory;
use std::time::Duration;

/// What one pipeline cost to move the dataset.
pub struct Side {
    pub name: &'static str,
    pub entries: u64,
    /// From starting the clients to the last client's exit with everything
    /// acknowledged.
    pub wall: Duration,
    /// Every client together, with the children they reaped.
    pub client_cpu: Duration,
    pub server_cpu: Duration,
    /// The largest client process.
    pub client_mem: Memory,
    /// The largest child of a client (jr-agent's journalctl).
    pub client_child_mem: Option<Memory>,
    pub server_mem: Memory,
    /// Bytes the clients sent towards the server.
    pub wire_bytes: u64,
    /// Database and WAL, or the receiver's journal files.
    pub stored_bytes: u64,
}

impl Side {
    fn rate(&self) -> f64 {
        self.entries as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn per_entry_us(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e6 / self.entries.max(1) as f64
    }

    fn per_entry(&self, bytes: u64) -> f64 {
        bytes as f64 / self.entries.max(1) as f64
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Renders the comparison; `peer` may be missing when only our side ran.
pub fn table(ours: &Side, peer: Option<&Side>) -> String {
    type Figure = fn(&Side) -> Option<f64>;
    let rows: &[(&str, Figure, usize)] = &[
        ("entries stored", |s| Some(s.entries as f64), 0),
        ("wall seconds", |s| Some(s.wall.as_secs_f64()), 2),
        ("entries per second", |s| Some(s.rate()), 0),
        (
            "client CPU s, all clients (user+sys)",
            |s| Some(s.client_cpu.as_secs_f64()),
            2,
        ),
        (
            "server CPU s (user+sys)",
            |s| Some(s.server_cpu.as_secs_f64()),
            2,
        ),
        (
            "client CPU µs per entry",
            |s| Some(s.per_entry_us(s.client_cpu)),
            2,
        ),
        (
            "server CPU µs per entry",
            |s| Some(s.per_entry_us(s.server_cpu)),
            2,
        ),
        (
            "client peak RssAnon MiB (largest)",
            |s| Some(mib(s.client_mem.rss_anon)),
            1,
        ),
        (
            "  its child (journalctl), RssAnon MiB",
            |s| s.client_child_mem.map(|m| mib(m.rss_anon)),
            1,
        ),
        (
            "server peak RssAnon MiB",
            |s| Some(mib(s.server_mem.rss_anon)),
            1,
        ),
        (
            "client VmHWM MiB (largest)",
            |s| Some(mib(s.client_mem.hwm)),
            1,
        ),
        ("server VmHWM MiB", |s| Some(mib(s.server_mem.hwm)), 1),
        (
            "bytes on the wire per entry",
            |s| Some(s.per_entry(s.wire_bytes)),
            1,
        ),
        (
            "stored bytes per entry",
            |s| Some(s.per_entry(s.stored_bytes)),
            1,
        ),
    ];
    let mut out = String::new();
    let peer_name = peer.map_or("", |p| p.name);
    out.push_str(&format!(
        "| {:<38} | {:>22} | {:>32} | {:>9} |\n",
        "", ours.name, peer_name, "ours/peer"
    ));
    out.push_str(&format!(
        "|{:-<40}|{:->24}|{:->34}|{:->11}|\n",
        "", ":", ":", ":"
    ));
    for (label, figure, decimals) in rows {
        let a = figure(ours);
        let b = peer.and_then(figure);
        let cell = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.decimals$}"));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".to_owned(),
        };
        out.push_str(&format!(
            "| {:<38} | {:>22} | {:>32} | {:>9} |\n",
            label,
            cell(a),
            cell(b),
            ratio
        ));
    }
    out
}

/// Percentile `p` (0–100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_picks_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
