//! journalctl as the oracle: what a journal holds, read back by systemd's
//! own reader.
//!
//! Cursors, timestamps and field bytes the pipeline stored are compared
//! with these. The JSON output is used rather than the export format so the
//! oracle shares no parsing with the agent: journalctl writes a binary
//! value as an array of byte numbers and a repeated field as an array of
//! values.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// One entry as journalctl reports it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub cursor: String,
    pub realtime_usec: u64,
    pub monotonic_usec: u64,
    /// Every non-address field; a repeated field appears once per value.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Logged {
    /// The first value of `name`.
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The fixture serial number ([`crate::fixture::TAG`]), if any.
    pub fn tag(&self) -> Option<u64> {
        std::str::from_utf8(self.value(crate::fixture::TAG)?)
            .ok()?
            .parse()
            .ok()
    }
}

/// Every entry of the journal files in `dir`, in journalctl's order.
pub fn read_directory(dir: &Path) -> Vec<Logged> {
    read(&["--directory".as_ref(), dir.as_os_str()])
}

/// Every entry of the journal file `file`.
pub fn read_file(file: &Path) -> Vec<Logged> {
    read(&["--file".as_ref(), file.as_os_str()])
}

/// The cursors of every entry in `dir`, in journalctl's order.
pub fn cursors_of_directory(dir: &Path) -> Vec<String> {
    // Asking for the cursor field alone keeps large journals quick to list.
    read(&[
        "--directory".as_ref(),
        dir.as_os_str(),
        "--output-fields=__CURSOR".as_ref(),
    ])
    .into_iter()
    .map(|e| e.cursor)
    .collect()
}

fn read(args: &[&std::ffi::OsStr]) -> Vec<Logged> {
    let output = Command::new("journalctl")
        .args(args)
        .args(["--output=json", "--all", "--no-pager"])
        .output()
        .expect("run journalctl");
    assert!(
        output.status.success(),
        "journalctl {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let value: Value = serde_json::from_slice(line).expect("journalctl JSON line");
            parse_entry(&value)
        })
        .collect()
}

fn parse_entry(value: &Value) -> Logged {
    let object = value
        .as_object()
        .expect("journalctl JSON entry is an object");
    let text = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("journalctl entry without {name}: {value}"))
    };
    let number = |name: &str| {
        text(name)
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("journalctl {name} is not a number: {value}"))
    };
    let mut fields = Vec::new();
    for (name, v) in object {
        if name.starts_with("__") {
            continue;
        }
        match v {
            Value::Array(items) if items.iter().all(|i| !i.is_number()) => {
                for item in items {
                    fields.push((name.clone(), bytes_of(item)));
                }
            }
            other => fields.push((name.clone(), bytes_of(other))),
        }
    }
    Logged {
        cursor: text("__CURSOR").to_owned(),
        realtime_usec: number("__REALTIME_TIMESTAMP"),
        monotonic_usec: number("__MONOTONIC_TIMESTAMP"),
        fields,
    }
}

fn bytes_of(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Array(bytes) => bytes
            .iter()
            .map(|b| {
                b.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .expect("journalctl binary value is an array of bytes")
            })
            .collect(),
        other => panic!("journalctl field value of unexpected JSON type: {other}"),
    }
}
