//! Filtering before decoding keeps and drops exactly the entries that a
//! full read filtered afterwards keeps and drops, in every layout
//! (compressed payloads included), and decodes less for dropped ones.

mod common;

use common::*;
use jr_journal::{Entry, Field};
use jr_journal_file::{FieldFilter, Journal};

struct Test {
    names: &'static [&'static str],
    keep: fn(&[Field]) -> bool,
}

impl FieldFilter for Test {
    fn needs(&self, name: &str) -> bool {
        self.names.contains(&name)
    }
    fn accepts(&self, fields: &[Field]) -> bool {
        (self.keep)(fields)
    }
}

fn value<'a>(fields: &'a [Field], name: &str) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.name == name).map(|f| &f.value[..])
}

fn subset(e: &Entry, f: &Test) -> Vec<Field> {
    e.fields
        .iter()
        .filter(|x| f.needs(x.name_str()))
        .cloned()
        .collect()
}

#[test]
fn early_filter_agrees_with_filtering_full_entries() {
    let d = tempfile::tempdir().unwrap();
    for (k, layout) in Layout::all().into_iter().enumerate() {
        let host = format!("host{k}");
        journal_remote(
            &export_for_host(&host, 90, 1_700_000_000_000_000 + k as u64 * 77, k as u64),
            &d.path().join(format!("{host}.journal")),
            layout,
        );
    }
    let filters = [
        Test {
            names: &["_SYSTEMD_UNIT"],
            keep: |f| value(f, "_SYSTEMD_UNIT") == Some(b"svc-1.service"),
        },
        Test {
            names: &["PRIORITY", "_SYSTEMD_UNIT"],
            keep: |f| {
                value(f, "PRIORITY").is_some_and(|p| p <= &b"3"[..])
                    && value(f, "_SYSTEMD_UNIT") != Some(b"svc-2.service")
            },
        },
        // MESSAGE is compressed in the large entries: its name is peeked.
        Test {
            names: &["MESSAGE"],
            keep: |f| value(f, "MESSAGE").is_some_and(|m| m.len() > 1000),
        },
        // Every occurrence of a repeated field, in order.
        Test {
            names: &["TAG", "_BOOT_ID"],
            keep: |f| {
                f.iter().filter(|x| x.name == "TAG").count() == 2
                    && f.first().is_some_and(|x| x.name == "_BOOT_ID")
            },
        },
        Test {
            names: &[],
            keep: |_| false,
        },
    ];
    let full: Vec<Entry> = Journal::open_directory(d.path()).unwrap().collect();
    assert_eq!(full.len(), 8 * 90);
    for (n, f) in filters.iter().enumerate() {
        let mut j = Journal::open_directory(d.path()).unwrap();
        let mut got = Vec::new();
        while let Some(x) = j.next_filtered(f) {
            got.push(x);
        }
        assert_eq!(j.stats().damaged(), 0);
        assert_eq!(got.len(), full.len(), "filter {n}");
        let mut kept = 0;
        for (g, e) in got.iter().zip(&full) {
            let want = f.accepts(&subset(e, f));
            assert_eq!(g.accepted, want, "filter {n}: {}", e.cursor);
            if want {
                kept += 1;
                assert_eq!(&g.entry, e, "filter {n}: a kept entry is complete");
            } else {
                assert_eq!(g.entry.cursor, e.cursor);
                assert_eq!(g.entry.realtime_usec, e.realtime_usec);
                assert_eq!(
                    g.entry.fields,
                    subset(e, f),
                    "filter {n}: fields of a dropped entry"
                );
            }
        }
        assert!(n == 4 || kept > 0, "filter {n} keeps something");
        assert!(kept < full.len(), "filter {n} drops something");
    }
}
