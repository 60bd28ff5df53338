//! How an entry's fields are packed into the `entries.fields` column.
//!
//! Layout: a version byte (1), then per field in journal order
//! `varint(name length) name varint(tag) [value]`, where tag 0 means "the
//! value is the row's `message` column" (used for the first `MESSAGE`, so
//! the message is stored once and stays readable with plain SQL) and tag
//! n > 0 means n - 1 value bytes follow. Varints are protobuf's (LEB128),
//! reusing prost's encoder.

use crate::fields;
use crate::Field;
use bytes::{Buf, Bytes};
use prost::encoding::{decode_varint, encode_varint};
use thiserror::Error;

const VERSION: u8 = 1;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StoredError {
    #[error("stored fields are empty")]
    Empty,
    #[error("stored fields have unknown version {0}")]
    Version(u8),
    #[error("stored fields are truncated or corrupt")]
    Corrupt,
    #[error("stored fields refer to a message the row does not have")]
    MissingMessage,
}

/// Appends the encoding of `fields` to `out`.
pub fn encode_fields(entry_fields: &[Field], out: &mut Vec<u8>) {
    out.push(VERSION);
    let mut message_seen = false;
    for f in entry_fields {
        encode_varint(f.name.len() as u64, out);
        out.extend_from_slice(&f.name);
        if !message_seen && f.name == fields::MESSAGE {
            message_seen = true;
            encode_varint(0, out);
        } else {
            encode_varint(f.value.len() as u64 + 1, out);
            out.extend_from_slice(&f.value);
        }
    }
}

/// Decodes a `fields` column; `message` is the row's `message` column.
pub fn decode_fields(blob: &[u8], message: Option<&[u8]>) -> Result<Vec<Field>, StoredError> {
    let (&version, mut rest) = blob.split_first().ok_or(StoredError::Empty)?;
    if version != VERSION {
        return Err(StoredError::Version(version));
    }
    let mut out = Vec::new();
    while rest.has_remaining() {
        let name_len = read_len(&mut rest)?;
        let name = take(&mut rest, name_len)?;
        std::str::from_utf8(name).map_err(|_| StoredError::Corrupt)?;
        let value = match read_len(&mut rest)? {
            0 => Bytes::copy_from_slice(message.ok_or(StoredError::MissingMessage)?),
            n => Bytes::copy_from_slice(take(&mut rest, n - 1)?),
        };
        out.push(Field::new(Bytes::copy_from_slice(name), value));
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

    #[test]
    fn message_is_not_repeated() {
        let e = vec![
            f("_PID", b"1"),
            f("MESSAGE", b"hello \0\xff world"),
            f("MESSAGE", b"second"),
        ];
        let mut blob = Vec::new();
        encode_fields(&e, &mut blob);
        assert!(!blob.windows(5).any(|w| w == b"hello"));
        assert_eq!(
            decode_fields(&blob, Some(b"hello \0\xff world")).unwrap(),
            e
        );
        assert_eq!(decode_fields(&blob, None), Err(StoredError::MissingMessage));
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert_eq!(decode_fields(&[], None), Err(StoredError::Empty));
        assert_eq!(decode_fields(&[9], None), Err(StoredError::Version(9)));
        assert_eq!(
            decode_fields(&[1, 5, b'A'], None),
            Err(StoredError::Corrupt)
        );
        assert_eq!(
            decode_fields(&[1, 1, b'A', 9, b'x'], None),
            Err(StoredError::Corrupt)
        );
    }

    proptest! {
        #[test]
        fn round_trips(items in proptest::collection::vec(("[A-Z_]{1,20}", proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let e: Vec<Field> = items.iter().map(|(n, v)| f(n, v)).collect();
            let message = e.iter().find(|x| x.name == "MESSAGE").map(|x| x.value.clone());
            let mut blob = Vec::new();
            encode_fields(&e, &mut blob);
            prop_assert_eq!(decode_fields(&blob, message.as_deref()).unwrap(), e);
        }

        #[test]
        fn never_panics(blob in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_fields(&blob, Some(b"m"));
        }
    }
}
