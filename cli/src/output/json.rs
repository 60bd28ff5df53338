//! journalctl's `-o json`: one object per line with `__CURSOR`,
//! `__REALTIME_TIMESTAMP`, `__MONOTONIC_TIMESTAMP`, `_BOOT_ID` and every
//! field. Values are strings when printable (newlines allowed), arrays of
//! byte numbers otherwise, `null` when the field is 4096 bytes or larger
//! (as journalctl does without `--all`); a field that repeats becomes an
//! array of its values.

use jr_journal::export::is_printable;
use jr_journal::fields;
use jr_proto::v1::LogEntry;
use serde_json::Value;

/// journalctl's `JSON_THRESHOLD`, measured over `NAME=value`.
const JSON_THRESHOLD: usize = 4096;

fn value(name: &str, v: &[u8]) -> Value {
    if name.len() + 1 + v.len() >= JSON_THRESHOLD {
        Value::Null
    } else if is_printable(v, true) {
        Value::String(String::from_utf8_lossy(v).into_owned())
    } else {
        Value::Array(v.iter().map(|b| Value::from(*b)).collect())
    }
}

/// Appends `e` as one JSON line.
pub fn write(e: &LogEntry, out: &mut Vec<u8>) {
    // (name, values) in order of first appearance.
    let mut items: Vec<(&str, Vec<Value>)> = vec![
        (fields::CURSOR, vec![Value::String(e.cursor.clone())]),
        (
            fields::REALTIME_TIMESTAMP,
            vec![Value::String(e.realtime_usec.to_string())],
        ),
        (
            fields::MONOTONIC_TIMESTAMP,
            vec![Value::String(e.monotonic_usec.to_string())],
        ),
    ];
    if !e.boot_id.is_empty() {
        items.push((fields::BOOT_ID, vec![Value::String(e.boot_id.clone())]));
    }
    for f in &e.fields {
        // The boot id comes from the entry's address, as in journalctl.
        if f.name == fields::BOOT_ID && !e.boot_id.is_empty() {
            continue;
        }
        let name = f.name_str();
        let v = value(name, &f.value);
        match items.iter_mut().find(|(n, _)| *n == name) {
            Some((_, vs)) => vs.push(v),
            None => items.push((name, vec![v])),
        }
    }
    out.push(b'{');
    for (i, (name, mut values)) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Serialising a string or a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        let v = if values.len() == 1 {
            values.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(values)
        };
        let _ = serde_json::to_writer(&mut *out, &v);
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use jr_proto::v1::Field;

    #[test]
    fn values_as_journalctl_prints_them() {
        let f = |n: &str, v: &[u8]| Field {
            name: n.to_owned().into(),
            value: bytes::Bytes::copy_from_slice(v),
        };
        let e = LogEntry {
            cursor: "s=1".into(),
            realtime_usec: 5,
            monotonic_usec: 6,
            boot_id: "b".into(),
            fields: vec![
                f("_BOOT_ID", b"b"),
                f("MESSAGE", b"a\nb"),
                f("X", b"1"),
                f("X", b"2"),
                f("BIN", b"\0\xff"),
                f("BIG", &[b'x'; 4092]),
            ],
            ..Default::default()
        };
        let mut out = Vec::new();
        write(&e, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "__CURSOR": "s=1", "__REALTIME_TIMESTAMP": "5", "__MONOTONIC_TIMESTAMP": "6",
                "_BOOT_ID": "b", "MESSAGE": "a\nb", "X": ["1", "2"], "BIN": [0, 255], "BIG": null
            })
        );
        assert!(out.ends_with(b"}\n") && !out[..out.len() - 1].contains(&b'\n'));
    }
}
