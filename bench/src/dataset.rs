//! Made-up but realistic journal entries: hosts with 8 to 50 units each,
//! journald's trusted fields, priorities, PIDs that change on restarts,
//! message sizes from 20 bytes to 4 KiB with a long tail, some multi-line
//! and some binary messages, Docker containers on part of the hosts, and
//! systemd's own messages about units.
//!
//! Everything comes from one seeded RNG per host, so a seed and a host
//! index always give the same entries: the ingest benchmark caches the
//! journal files it writes from them, and the load generator produces the
//! same shape of data without journal files.

use crate::vocabulary::{DOCKER, IMAGES, INIT, SERVICES, WORDS};
use bytes::Bytes;
use jr_journal::cursor::Cursor;
use jr_proto::v1::{Entry, Field};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};

/// A word that occurs about once in [`RARE_WORD_EVERY`] messages, for the
/// full-text query benchmark.
pub const RARE_WORD: &str = "xylophonist";
/// One message in this many carries [`RARE_WORD`].
pub const RARE_WORD_EVERY: u32 = 200_000;
/// The unit every host runs and the query benchmark asks for.
pub const COMMON_UNIT: &str = "sshd.service";

/// Where an entry's fields came from, as journald records it.
#[derive(Clone)]
struct Unit {
    unit: String,
    comm: String,
    exe: String,
    uid: u32,
    pid: u32,
    invocation_id: String,
    transport: &'static str,
    /// Docker's driver: (name, short id, full id, image) per container.
    containers: Vec<[String; 4]>,
}

/// One machine whose journal the dataset holds.
#[derive(Clone, Debug)]
pub struct Host {
    pub hostname: String,
    pub machine_id: String,
    pub boot_id: String,
}

/// Entries of one host, in journal order.
pub struct Generator {
    rng: StdRng,
    pub host: Host,
    units: Vec<Unit>,
    /// Cumulative weights over `units`: a few units log most.
    cumulative: Vec<f64>,
    seqnum_id: String,
    seqnum: u64,
    realtime_usec: u64,
    monotonic_usec: u64,
    step_usec: u64,
}

fn id128(rng: &mut StdRng) -> String {
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

impl Generator {
    /// Host `index` of the dataset `seed`; its first entry is at
    /// `start_realtime_usec`, the next ones about `step_usec` apart.
    pub fn new(seed: u64, index: usize, start_realtime_usec: u64, step_usec: u64) -> Generator {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let host = Host {
            hostname: format!("node-{index:03}"),
            machine_id: id128(&mut rng),
            boot_id: id128(&mut rng),
        };
        let count = rng.random_range(8..=50usize);
        // The named services and up to 20 application workers (`None`).
        let mut pool: Vec<Option<(&str, &str, &str)>> =
            SERVICES.iter().copied().map(Some).collect();
        pool.extend(std::iter::repeat_n(None, 20));
        pool.shuffle(&mut rng);
        let mut chosen: Vec<(String, String, String)> = Vec::new();
        chosen.push((COMMON_UNIT.into(), "sshd".into(), "/usr/sbin/sshd".into()));
        let mut app = 0;
        for service in pool {
            if chosen.len() + 2 >= count {
                break;
            }
            match service {
                Some((u, _, _)) if u == COMMON_UNIT => {}
                Some((u, c, e)) => chosen.push((u.into(), c.into(), e.into())),
                None => {
                    app += 1;
                    chosen.push((
                        format!("app-worker@{app}.service"),
                        "app-worker".into(),
                        "/opt/app/bin/app-worker".into(),
                    ));
                }
            }
        }
        let docker = rng.random_bool(0.75);
        if docker {
            chosen.push((DOCKER.0.into(), DOCKER.1.into(), DOCKER.2.into()));
        }
        chosen.push((INIT.0.into(), INIT.1.into(), INIT.2.into()));
        let mut units = Vec::new();
        for (unit, comm, exe) in chosen {
            let transport = match rng.random_range(0..3) {
                0 => "syslog",
                1 => "journal",
                _ => "stdout",
            };
            let containers = if unit == DOCKER.0 {
                (0..rng.random_range(2..=10))
                    .map(|i| {
                        let full = format!("{}{}", id128(&mut rng), id128(&mut rng));
                        let image = IMAGES[rng.random_range(0..IMAGES.len())];
                        let name = format!(
                            "{}-{i}",
                            image
                                .rsplit('/')
                                .next()
                                .unwrap_or(image)
                                .split(':')
                                .next()
                                .unwrap_or("c")
                        );
                        [name, full[..12].to_owned(), full, image.to_owned()]
                    })
                    .collect()
            } else {
                Vec::new()
            };
            units.push(Unit {
                pid: if unit == INIT.0 {
                    1
                } else {
                    rng.random_range(300..4_000_000)
                },
                uid: if rng.random_bool(0.7) {
                    0
                } else {
                    rng.random_range(100..2000)
                },
                invocation_id: id128(&mut rng),
                transport: if unit == DOCKER.0 {
                    "journal"
                } else {
                    transport
                },
                unit,
                comm,
                exe,
                containers,
            });
        }
        // Zipf-like weights; Docker's containers log a lot when present.
        let mut cumulative = Vec::with_capacity(units.len());
        let mut total = 0.0;
        for (i, u) in units.iter().enumerate() {
            total += if u.unit == DOCKER.0 {
                0.6
            } else {
                1.0 / (i as f64 + 1.0)
            };
            cumulative.push(total);
        }
        Generator {
            seqnum_id: id128(&mut rng),
            host,
            units,
            cumulative,
            rng,
            seqnum: 0,
            realtime_usec: start_realtime_usec,
            monotonic_usec: 5_000_000,
            step_usec: step_usec.max(2),
        }
    }

    fn pick_unit(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = self.rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.units.len() - 1)
    }

    fn priority(&mut self) -> u8 {
        match self.rng.random_range(0..1000) {
            0..=2 => self.rng.random_range(0..=1),
            3..=9 => 2,
            10..=69 => 3,
            70..=169 => 4,
            170..=249 => 5,
            250..=949 => 6,
            _ => 7,
        }
    }

    /// 20 B to 4 KiB, most short, a long tail.
    fn message_len(&mut self) -> usize {
        match self.rng.random_range(0..1000) {
            0..=749 => self.rng.random_range(20..120),
            750..=959 => self.rng.random_range(120..600),
            960..=994 => self.rng.random_range(600..2000),
            _ => self.rng.random_range(2000..=4096),
        }
    }

    fn text(&mut self, len: usize, lines: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 16);
        if self.rng.random_ratio(1, RARE_WORD_EVERY) {
            out.extend_from_slice(RARE_WORD.as_bytes());
            out.push(b' ');
        }
        while out.len() < len {
            if !out.is_empty() {
                if lines && self.rng.random_ratio(1, 8) {
                    out.extend_from_slice(b"\n    at ");
                } else {
                    out.push(b' ');
                }
            }
            match self.rng.random_range(0..10) {
                0 => {
                    let n: u32 = self.rng.random_range(0..100_000);
                    out.extend_from_slice(n.to_string().as_bytes());
                }
                1 => {
                    let ip = self.rng.random::<[u8; 2]>();
                    out.extend_from_slice(
                        format!("10.{}.{}.{}", ip[0] % 8, ip[1], ip[0]).as_bytes(),
                    );
                }
                _ => {
                    let w = WORDS[self.rng.random_range(0..WORDS.len())];
                    out.extend_from_slice(w.as_bytes());
                }
            }
        }
        out.truncate(len);
        out
    }

    fn message(&mut self) -> Vec<u8> {
        let len = self.message_len();
        match self.rng.random_range(0..1000) {
            // Binary: not UTF-8, with NULs, sent in the export format's
            // length-prefixed form.
            0..=2 => {
                let mut v = vec![0u8; len];
                self.rng.fill_bytes(&mut v);
                v[0] = 0xff;
                v
            }
            // Multi-line: stack traces and dumps.
            3..=22 => self.text(len.max(200), true),
            _ => self.text(len, false),
        }
    }

    /// The next entry of this host, with a cursor in sd-journal's format.
    pub fn next_entry(&mut self) -> Entry {
        self.seqnum += 1;
        self.realtime_usec += self.rng.random_range(1..self.step_usec * 2);
        self.monotonic_usec += self.rng.random_range(1..self.step_usec * 2);
        let i = self.pick_unit();
        if self.units[i].pid != 1 && self.rng.random_ratio(1, 5_000) {
            self.units[i].pid = self.rng.random_range(300..4_000_000);
        }
        let priority = self.priority();
        let mut fields = Vec::with_capacity(24);
        let mut add = |name: &str, value: Vec<u8>| {
            fields.push(Field {
                name: name.to_owned().into(),
                value: Bytes::from(value),
            })
        };
        let unit = self.units[i].clone();
        let container = if unit.containers.is_empty() || self.rng.random_ratio(1, 10) {
            None
        } else {
            Some(unit.containers[self.rng.random_range(0..unit.containers.len())].clone())
        };
        let about = if unit.pid == 1 {
            let j = self.rng.random_range(0..self.units.len());
            Some(self.units[j].unit.clone())
        } else {
            None
        };
        add("PRIORITY", priority.to_string().into_bytes());
        add("SYSLOG_FACILITY", b"3".to_vec());
        let identifier = container
            .as_ref()
            .map_or(unit.comm.as_str(), |c| c[1].as_str());
        add("SYSLOG_IDENTIFIER", identifier.as_bytes().to_vec());
        if let Some(about) = &about {
            add("UNIT", about.as_bytes().to_vec());
            add("INVOCATION_ID", id128(&mut self.rng).into_bytes());
            let verb = ["Started", "Stopped", "Reloading", "Starting"][self.rng.random_range(0..4)];
            add("MESSAGE", format!("{verb} {about}.").into_bytes());
        } else {
            let m = self.message();
            add("MESSAGE", m);
        }
        if let Some([name, short, full, image]) = &container {
            add("CONTAINER_ID", short.as_bytes().to_vec());
            add("CONTAINER_ID_FULL", full.as_bytes().to_vec());
            add("CONTAINER_NAME", name.as_bytes().to_vec());
            add("CONTAINER_TAG", short.as_bytes().to_vec());
            add("IMAGE_NAME", image.as_bytes().to_vec());
        }
        add("_PID", unit.pid.to_string().into_bytes());
        add("_UID", unit.uid.to_string().into_bytes());
        add("_GID", unit.uid.to_string().into_bytes());
        add("_COMM", unit.comm.as_bytes().to_vec());
        add("_EXE", unit.exe.as_bytes().to_vec());
        add(
            "_CMDLINE",
            format!("{} --config /etc/{}.conf", unit.exe, unit.comm).into_bytes(),
        );
        add("_CAP_EFFECTIVE", b"1ffffffffff".to_vec());
        let slice = if unit.pid == 1 {
            "-.slice"
        } else {
            "system.slice"
        };
        add(
            "_SYSTEMD_CGROUP",
            format!("/{slice}/{}", unit.unit).into_bytes(),
        );
        add("_SYSTEMD_UNIT", unit.unit.as_bytes().to_vec());
        add("_SYSTEMD_SLICE", slice.as_bytes().to_vec());
        add(
            "_SYSTEMD_INVOCATION_ID",
            unit.invocation_id.as_bytes().to_vec(),
        );
        add("_TRANSPORT", unit.transport.as_bytes().to_vec());
        add("_BOOT_ID", self.host.boot_id.as_bytes().to_vec());
        add("_MACHINE_ID", self.host.machine_id.as_bytes().to_vec());
        add("_HOSTNAME", self.host.hostname.as_bytes().to_vec());
        if unit.transport != "stdout" {
            add(
                "_SOURCE_REALTIME_TIMESTAMP",
                (self.realtime_usec - 3).to_string().into_bytes(),
            );
        }
        let cursor = Cursor {
            seqnum_id: self.seqnum_id.clone(),
            seqnum: self.seqnum,
            boot_id: self.host.boot_id.clone(),
            monotonic_usec: self.monotonic_usec,
            realtime_usec: self.realtime_usec,
            xor_hash: self.rng.next_u64(),
        };
        Entry {
            cursor: cursor.to_string(),
            realtime_usec: self.realtime_usec,
            monotonic_usec: self.monotonic_usec,
            fields,
        }
    }
}

/// Appends `entry` in the export format that `systemd-journal-remote`
/// reads. The cursor is left out: the writer assigns its own.
pub fn write_export(entry: &Entry, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(
        out,
        "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n",
        entry.realtime_usec, entry.monotonic_usec
    );
    for f in &entry.fields {
        jr_journal::export::write_field(&f.name, &f.value, out);
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_entries_and_variety() {
        let mut a = Generator::new(7, 1, 1_700_000_000_000_000, 1000);
        let mut b = Generator::new(7, 1, 1_700_000_000_000_000, 1000);
        let mut sizes = Vec::new();
        let mut binary = 0;
        let mut multiline = 0;
        for _ in 0..20_000 {
            let (x, y) = (a.next_entry(), b.next_entry());
            assert_eq!(x, y);
            let msg = x
                .fields
                .iter()
                .find(|f| f.name == "MESSAGE")
                .map(|f| f.value.clone());
            let msg = msg.unwrap_or_default();
            sizes.push(msg.len());
            binary += usize::from(std::str::from_utf8(&msg).is_err());
            multiline += usize::from(msg.contains(&b'\n'));
            jr_journal::cursor::validate(&x.cursor).expect("valid cursor");
        }
        sizes.sort_unstable();
        assert!(sizes[0] >= 12, "shortest message {}", sizes[0]);
        assert!(sizes[sizes.len() - 1] > 2000);
        assert!(binary > 0 && multiline > 0);
        let other = Generator::new(7, 2, 0, 1000);
        assert_ne!(other.host.machine_id, a.host.machine_id);
        // Docker runs on about three hosts in four.
        let with_docker = (0..8)
            .filter(|&i| {
                Generator::new(7, i, 0, 1000)
                    .units
                    .iter()
                    .any(|u| !u.containers.is_empty())
            })
            .count();
        assert!(with_docker > 0);
    }
}
