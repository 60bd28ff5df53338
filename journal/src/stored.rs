//! How an entry's fields are packed into the `entries.fields` column.
//!
//! Layout (version 2, written): a version byte, then per field in journal
//! order `varint(code)`, the name itself as `varint(length) name` when the
//! code is 0, then `varint(tag) [value]`. A code n > 0 stands for the n-th
//! name of [`NAMES`]: the twenty-odd names journald puts on every entry
//! were most of a row's bytes after its values. The tag says where the
//! value is:
//! - 0: the row's `message` column (the first `MESSAGE`, so the message
//!   is stored once and stays readable with plain SQL);
//! - 1: the row's boot id, 2: its host's machine id (values journald
//!   repeats on every entry, which the row already has; see [`RowValues`]);
//! - n > 2: the n - 3 value bytes that follow.
//!
//! Varints are protobuf's (LEB128), reusing prost's encoder.
//!
//! Version 1 (rows of earlier releases, still read): names written out
//! (no code), and tag 0 for the message or n > 0 for n - 1 bytes.

use crate::fields;
use crate::Field;
use bytes::{Buf, Bytes};
use prost::encoding::{decode_varint, encode_varint};
use rustc_hash::FxHashMap;
use std::sync::OnceLock;
use thiserror::Error;

/// Names written out in full.
const LITERAL: u8 = 1;
/// Names as codes into [`NAMES`], values that may be the row's.
const CODED: u8 = 2;

/// Value tags: the row's message, boot id, machine id.
const IS_MESSAGE: u64 = 0;
const IS_BOOT_ID: u64 = 1;
const IS_MACHINE_ID: u64 = 2;
/// First tag of a value written out (tag - this = its length), per version.
const INLINE_V1: u64 = 1;
const INLINE_V2: u64 = 3;

/// What a stored entry's fields may refer to instead of holding: the
/// row's `message` column, its boot id (`strings.value` of `boot_id`) and
/// its host's machine id (`hosts.machine_id`, which never changes for a
/// host). A field is only stored as a reference when its value is exactly
/// the row's, so a field that differs (another machine's entries in the
/// same directory) is written out.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowValues<'a> {
    pub message: Option<&'a [u8]>,
    pub boot_id: Option<&'a [u8]>,
    pub machine_id: Option<&'a [u8]>,
}

/// Field names stored as a one-byte code: those of systemd.journal-fields(7)
/// and of the container engines' journald drivers. A name's code is its
/// place in this list plus one and is stored in every row, so names are
/// only ever appended, never removed or reordered; the list stays under
/// 128 names so that every code is one byte.
pub const NAMES: [&str; 95] = [
    "MESSAGE",
    "MESSAGE_ID",
    "PRIORITY",
    "CODE_FILE",
    "CODE_LINE",
    "CODE_FUNC",
    "ERRNO",
    "INVOCATION_ID",
    "USER_INVOCATION_ID",
    "SYSLOG_FACILITY",
    "SYSLOG_IDENTIFIER",
    "SYSLOG_PID",
    "SYSLOG_TIMESTAMP",
    "SYSLOG_RAW",
    "DOCUMENTATION",
    "TID",
    "UNIT",
    "USER_UNIT",
    "_PID",
    "_UID",
    "_GID",
    "_COMM",
    "_EXE",
    "_CMDLINE",
    "_CAP_EFFECTIVE",
    "_AUDIT_SESSION",
    "_AUDIT_LOGINUID",
    "_SYSTEMD_CGROUP",
    "_SYSTEMD_SLICE",
    "_SYSTEMD_UNIT",
    "_SYSTEMD_USER_UNIT",
    "_SYSTEMD_USER_SLICE",
    "_SYSTEMD_SESSION",
    "_SYSTEMD_OWNER_UID",
    "_SYSTEMD_INVOCATION_ID",
    "_SELINUX_CONTEXT",
    "_SOURCE_REALTIME_TIMESTAMP",
    "_SOURCE_MONOTONIC_TIMESTAMP",
    "_BOOT_ID",
    "_MACHINE_ID",
    "_HOSTNAME",
    "_TRANSPORT",
    "_STREAM_ID",
    "_LINE_BREAK",
    "_NAMESPACE",
    "_RUNTIME_SCOPE",
    "_PIDFD_ID",
    "_KERNEL_DEVICE",
    "_KERNEL_SUBSYSTEM",
    "_UDEV_SYSNAME",
    "_UDEV_DEVNODE",
    "_UDEV_DEVLINK",
    "_AUDIT_TYPE",
    "_AUDIT_TYPE_NAME",
    "_AUDIT_ID",
    "COREDUMP_UNIT",
    "COREDUMP_USER_UNIT",
    "OBJECT_PID",
    "OBJECT_UID",
    "OBJECT_GID",
    "OBJECT_COMM",
    "OBJECT_EXE",
    "OBJECT_CMDLINE",
    "OBJECT_AUDIT_SESSION",
    "OBJECT_AUDIT_LOGINUID",
    "OBJECT_SYSTEMD_CGROUP",
    "OBJECT_SYSTEMD_SESSION",
    "OBJECT_SYSTEMD_OWNER_UID",
    "OBJECT_SYSTEMD_UNIT",
    "OBJECT_SYSTEMD_USER_UNIT",
    "OBJECT_SYSTEMD_INVOCATION_ID",
    "JOB_ID",
    "JOB_TYPE",
    "JOB_RESULT",
    "UNIT_RESULT",
    "EXIT_CODE",
    "EXIT_STATUS",
    "CPU_USAGE_NSEC",
    "SESSION_ID",
    "USER_ID",
    "LEADER",
    "SEAT_ID",
    "CONTAINER_ID",
    "CONTAINER_ID_FULL",
    "CONTAINER_NAME",
    "CONTAINER_TAG",
    "CONTAINER_LOG_EPOCH",
    "CONTAINER_LOG_ORDINAL",
    "CONTAINER_PARTIAL_MESSAGE",
    "CONTAINER_PARTIAL_ID",
    "CONTAINER_PARTIAL_ORDINAL",
    "CONTAINER_PARTIAL_LAST",
    "IMAGE_NAME",
    "SYSLOG_STRUCTURED_DATA",
    "SYSLOG_MSGID",
];

const _: () = assert!(NAMES.len() < 128, "codes must stay one-byte varints");
const MESSAGE_CODE: u8 = 1;
const BOOT_ID_CODE: u8 = 39;
const MACHINE_ID_CODE: u8 = 40;
const _: () = assert!(eq(NAMES[MESSAGE_CODE as usize - 1], fields::MESSAGE));
const _: () = assert!(eq(NAMES[BOOT_ID_CODE as usize - 1], fields::BOOT_ID));
const _: () = assert!(eq(NAMES[MACHINE_ID_CODE as usize - 1], fields::MACHINE_ID));

const fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The code of a name in [`NAMES`].
fn code_of(name: &[u8]) -> Option<u8> {
    static CODES: OnceLock<FxHashMap<&'static [u8], u8>> = OnceLock::new();
    CODES
        .get_or_init(|| {
            (1..)
                .zip(NAMES)
                .map(|(code, name)| (name.as_bytes(), code))
                .collect()
        })
        .get(name)
        .copied()
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StoredError {
    #[error("stored fields are empty")]
    Empty,
    #[error("stored fields have unknown version {0}")]
    Version(u8),
    #[error("stored fields are truncated or corrupt")]
    Corrupt,
    #[error("stored fields refer to a {0} the row does not have")]
    Missing(&'static str),
}

/// Appends the encoding of `fields` to `out`. The first `MESSAGE` is
/// always stored as the row's message column: the row must hold it.
pub fn encode_fields(entry_fields: &[Field], row: &RowValues<'_>, out: &mut Vec<u8>) {
    out.push(CODED);
    let mut message_seen = false;
    for f in entry_fields {
        let code = code_of(&f.name);
        match code {
            Some(code) => out.push(code),
            None => {
                out.push(0);
                encode_varint(f.name.len() as u64, out);
                out.extend_from_slice(&f.name);
            }
        }
        let is = |value: Option<&[u8]>| value == Some(&f.value[..]);
        let tag = match code {
            Some(MESSAGE_CODE) if !message_seen => {
                message_seen = true;
                Some(IS_MESSAGE)
            }
            Some(BOOT_ID_CODE) if is(row.boot_id) => Some(IS_BOOT_ID),
            Some(MACHINE_ID_CODE) if is(row.machine_id) => Some(IS_MACHINE_ID),
            _ => None,
        };
        match tag {
            Some(tag) => encode_varint(tag, out),
            None => {
                encode_varint(f.value.len() as u64 + INLINE_V2, out);
                out.extend_from_slice(&f.value);
            }
        }
    }
}

/// Decodes a `fields` column with the values of its row.
pub fn decode_fields(blob: &[u8], row: &RowValues<'_>) -> Result<Vec<Field>, StoredError> {
    let (&version, mut rest) = blob.split_first().ok_or(StoredError::Empty)?;
    let inline = match version {
        LITERAL => INLINE_V1,
        CODED => INLINE_V2,
        _ => return Err(StoredError::Version(version)),
    };
    let from_row = |value: Option<&[u8]>, what| {
        value
            .map(Bytes::copy_from_slice)
            .ok_or(StoredError::Missing(what))
    };
    let mut out = Vec::new();
    while rest.has_remaining() {
        let code = match version {
            CODED => read_len(&mut rest)?,
            _ => 0,
        };
        let name = match code {
            0 => {
                let name_len = read_len(&mut rest)?;
                let name = take(&mut rest, name_len)?;
                std::str::from_utf8(name).map_err(|_| StoredError::Corrupt)?;
                Bytes::copy_from_slice(name)
            }
            n => Bytes::from_static(NAMES.get(n - 1).ok_or(StoredError::Corrupt)?.as_bytes()),
        };
        let value = match read_len(&mut rest)? as u64 {
            IS_MESSAGE => from_row(row.message, "message")?,
            IS_BOOT_ID if inline == INLINE_V2 => from_row(row.boot_id, "boot id")?,
            IS_MACHINE_ID if inline == INLINE_V2 => from_row(row.machine_id, "machine id")?,
            n => {
                let len = usize::try_from(n - inline).map_err(|_| StoredError::Corrupt)?;
                Bytes::copy_from_slice(take(&mut rest, len)?)
            }
        };
        out.push(Field::new(name, value));
    }
    Ok(out)
}

fn read_len(buf: &mut &[u8]) -> Result<usize, StoredError> {
    let n = decode_varint(buf).map_err(|_| StoredError::Corrupt)?;
    usize::try_from(n).map_err(|_| StoredError::Corrupt)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoredError> {
    if buf.len() < n {
        return Err(StoredError::Corrupt);
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(name: &str, value: &[u8]) -> Field {
        Field {
            name: name.to_owned().into(),
            value: Bytes::copy_from_slice(value),
        }
    }

    fn message(m: &[u8]) -> RowValues<'_> {
        RowValues {
            message: Some(m),
            ..RowValues::default()
        }
    }

    /// A row as releases before name codes wrote it.
    fn literal(e: &[Field], out: &mut Vec<u8>) {
        out.push(LITERAL);
        for f in e {
            encode_varint(f.name.len() as u64, out);
            out.extend_from_slice(&f.name);
            encode_varint(f.value.len() as u64 + 1, out);
            out.extend_from_slice(&f.value);
        }
    }

    #[test]
    fn message_is_not_repeated() {
        let e = vec![
            f("_PID", b"1"),
            f("MESSAGE", b"hello \0\xff world"),
            f("MESSAGE", b"second"),
        ];
        let mut blob = Vec::new();
        encode_fields(&e, &message(b"hello \0\xff world"), &mut blob);
        assert!(!blob.windows(5).any(|w| w == b"hello"));
        assert_eq!(
            decode_fields(&blob, &message(b"hello \0\xff world")).unwrap(),
            e
        );
        assert_eq!(
            decode_fields(&blob, &RowValues::default()),
            Err(StoredError::Missing("message"))
        );
    }

    #[test]
    fn known_names_take_one_byte_and_codes_never_move() {
        let e = vec![
            f("MESSAGE", b"m"),
            f("_BOOT_ID", b"b"),
            f("X_APP_FIELD", b"x"),
            f("IMAGE_NAME", b"i"),
        ];
        let mut blob = Vec::new();
        encode_fields(&e, &message(b"m"), &mut blob);
        // Stored rows depend on these exact codes and tags.
        let mut expected = vec![CODED, 1, 0, 39, 4, b'b', 0, 11];
        expected.extend_from_slice(b"X_APP_FIELD");
        expected.extend_from_slice(&[4, b'x', 93, 4, b'i']);
        assert_eq!(blob, expected);
        assert_eq!(decode_fields(&blob, &message(b"m")).unwrap(), e);
    }

    #[test]
    fn the_rows_boot_and_machine_ids_are_referred_to_only_when_equal() {
        let boot = b"879e0a71fcde040dfe573b0ed3ab89c7";
        let machine = b"c281e9568b5434da93498f1a0c7aa898";
        let row = RowValues {
            message: Some(b"m"),
            boot_id: Some(boot),
            machine_id: Some(machine),
        };
        let e = vec![
            f("_BOOT_ID", boot),
            f("_MACHINE_ID", machine),
            f("MESSAGE", b"m"),
            // Another machine's entry, and a second copy: written out.
            f("_MACHINE_ID", b"0123"),
            f("_BOOT_ID", boot),
        ];
        let mut blob = Vec::new();
        encode_fields(&e, &row, &mut blob);
        assert_eq!(
            blob,
            [&[CODED, 39, 1, 40, 2, 1, 0, 40, 7][..], b"0123", &[39, 1]].concat()
        );
        assert_eq!(decode_fields(&blob, &row).unwrap(), e);
        let without_boot = RowValues {
            boot_id: None,
            ..row
        };
        assert_eq!(
            decode_fields(&blob, &without_boot),
            Err(StoredError::Missing("boot id"))
        );
    }

    #[test]
    fn rows_without_name_codes_still_decode() {
        let e = vec![f("_PID", b"7"), f("_BOOT_ID", b""), f("CUSTOM", b"x")];
        let mut blob = Vec::new();
        literal(&e, &mut blob);
        // In version 1, tags 1 and 2 are values of 0 and 1 bytes.
        assert_eq!(decode_fields(&blob, &RowValues::default()).unwrap(), e);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let none = RowValues::default();
        assert_eq!(
            decode_fields(&[CODED, NAMES.len() as u8 + 1, 3], &none),
            Err(StoredError::Corrupt)
        );
        assert_eq!(
            decode_fields(&[CODED, 0, 1, 0xff, 3], &none),
            Err(StoredError::Corrupt)
        );
        assert_eq!(decode_fields(&[], &none), Err(StoredError::Empty));
        assert_eq!(decode_fields(&[9], &none), Err(StoredError::Version(9)));
        assert_eq!(
            decode_fields(&[LITERAL, 5, b'A'], &none),
            Err(StoredError::Corrupt)
        );
        assert_eq!(
            decode_fields(&[LITERAL, 1, b'A', 9, b'x'], &none),
            Err(StoredError::Corrupt)
        );
    }

    proptest! {
        #[test]
        fn round_trips(
            items in proptest::collection::vec((prop_oneof![
                "[A-Z_]{1,20}",
                proptest::sample::select(&NAMES[..]).prop_map(str::to_owned),
            ], proptest::collection::vec(any::<u8>(), 0..300)), 0..20),
            boot in proptest::collection::vec(any::<u8>(), 0..3),
            machine in proptest::collection::vec(any::<u8>(), 0..3),
        ) {
            let e: Vec<Field> = items.iter().map(|(n, v)| f(n, v)).collect();
            let message = e.iter().find(|x| x.name == "MESSAGE").map(|x| x.value.clone());
            let row = RowValues {
                message: message.as_deref(),
                boot_id: Some(&boot),
                machine_id: Some(&machine),
            };
            let mut blob = Vec::new();
            encode_fields(&e, &row, &mut blob);
            prop_assert_eq!(decode_fields(&blob, &row).unwrap(), e);
        }

        #[test]
        fn never_panics(blob in proptest::collection::vec(any::<u8>(), 0..200)) {
            let row = message(b"m");
            let _ = decode_fields(&blob, &row);
            let mut coded = vec![CODED];
            coded.extend_from_slice(&blob);
            let _ = decode_fields(&coded, &row);
        }
    }
}
