//! sd-journal cursors: `s=<seqnum id>;i=<seqnum>;b=<boot id>;m=<monotonic>;t=<realtime>;x=<xor hash>`.
//!
//! A cursor names one entry independently of the file that holds it, so a
//! position survives rotation. [`Cursor::same_entry`] follows
//! `sd_journal_test_cursor`: two cursors name the same entry when every
//! part matches.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The longest cursor we accept; sd-journal's are about 150 bytes.
pub const MAX_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// 128-bit id of the sequence-number space, 32 lowercase hex digits.
    pub seqnum_id: String,
    pub seqnum: u64,
    /// 32 lowercase hex digits.
    pub boot_id: String,
    pub monotonic_usec: u64,
    pub realtime_usec: u64,
    pub xor_hash: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("cursor is empty")]
    Empty,
    #[error("cursor is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("cursor part {0:?} is not KEY=VALUE")]
    NotKeyValue(String),
    #[error("cursor part {key}= has an invalid value {value:?}")]
    BadValue { key: char, value: String },
    #[error("cursor part {0}= appears twice")]
    Duplicate(char),
    #[error("cursor lacks its {0}= part")]
    Missing(char),
    #[error("cursor has an unknown part {0:?}")]
    UnknownKey(String),
}

fn is_id128(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses and checks a cursor; the error says which part is wrong.
pub fn validate(s: &str) -> Result<Cursor, CursorError> {
    s.parse()
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(CursorError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(CursorError::TooLong);
        }
        let mut ids: [Option<String>; 2] = [None, None];
        let mut nums: [Option<u64>; 4] = [None; 4];
        for part in s.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(CursorError::NotKeyValue(part.to_owned()));
            };
            let key = match k.as_bytes() {
                [c] => *c as char,
                _ => return Err(CursorError::UnknownKey(k.to_owned())),
            };
            let bad = || CursorError::BadValue {
                key,
                value: v.to_owned(),
            };
            let (id_slot, num_slot) = match key {
                's' => (Some(0), None),
                'b' => (Some(1), None),
                'i' => (None, Some(0)),
                'm' => (None, Some(1)),
                't' => (None, Some(2)),
                'x' => (None, Some(3)),
                _ => return Err(CursorError::UnknownKey(k.to_owned())),
            };
            if let Some(i) = id_slot {
                if !is_id128(v) {
                    return Err(bad());
                }
                if ids[i].replace(v.to_ascii_lowercase()).is_some() {
                    return Err(CursorError::Duplicate(key));
                }
            }
            if let Some(i) = num_slot {
                if v.is_empty() || v.len() > 16 {
                    return Err(bad());
                }
                let n = u64::from_str_radix(v, 16).map_err(|_| bad())?;
                if nums[i].replace(n).is_some() {
                    return Err(CursorError::Duplicate(key));
                }
            }
        }
        let [s_id, b_id] = ids;
        let [i, m, t, x] = nums;
        Ok(Cursor {
            seqnum_id: s_id.ok_or(CursorError::Missing('s'))?,
            seqnum: i.ok_or(CursorError::Missing('i'))?,
            boot_id: b_id.ok_or(CursorError::Missing('b'))?,
            monotonic_usec: m.ok_or(CursorError::Missing('m'))?,
            realtime_usec: t.ok_or(CursorError::Missing('t'))?,
            xor_hash: x.ok_or(CursorError::Missing('x'))?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "s={};i={:x};b={};m={:x};t={:x};x={:x}",
            self.seqnum_id,
            self.seqnum,
            self.boot_id,
            self.monotonic_usec,
            self.realtime_usec,
            self.xor_hash
        )
    }
}

impl Cursor {
    /// Whether both cursors name the same entry (every part equal, as
    /// `sd_journal_test_cursor` checks).
    pub fn same_entry(&self, other: &Cursor) -> bool {
        self == other
    }

    /// Entries between `self` and a later `next` in the same sequence-number
    /// space, or `None` when the spaces differ (the count is unknowable).
    pub fn entries_between(&self, next: &Cursor) -> Option<u64> {
        (self.seqnum_id == next.seqnum_id && next.seqnum > self.seqnum)
            .then(|| next.seqnum - self.seqnum - 1)
    }
}

/// Whether two cursor strings name the same entry. Strings that do not
/// parse are compared byte for byte.
pub fn same_entry(a: &str, b: &str) -> bool {
    match (a.parse::<Cursor>(), b.parse::<Cursor>()) {
        (Ok(x), Ok(y)) => x.same_entry(&y),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "s=4f30609c77d9406e86aba8a29393cad7;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=60a24181e4000;x=782928888f5f5546";

    #[test]
    fn round_trip() {
        let c: Cursor = C.parse().unwrap();
        assert_eq!(c.seqnum, 1);
        assert_eq!(c.monotonic_usec, 1000);
        assert_eq!(c.realtime_usec, 1_700_000_000_000_000);
        assert_eq!(c.to_string(), C);
        assert!(same_entry(C, C));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(validate(""), Err(CursorError::Empty));
        assert!(matches!(
            validate("hello"),
            Err(CursorError::NotKeyValue(_))
        ));
        assert!(matches!(
            validate("s=zz;i=1"),
            Err(CursorError::BadValue { key: 's', .. })
        ));
        assert_eq!(
            validate("s=4f30609c77d9406e86aba8a29393cad7;i=1"),
            Err(CursorError::Missing('b'))
        );
        assert!(matches!(
            validate(&C.replace("x=", "q=")),
            Err(CursorError::UnknownKey(_))
        ));
        assert!(matches!(
            validate(&format!("{C};i=2")),
            Err(CursorError::Duplicate('i'))
        ));
        assert_eq!(validate(&"a".repeat(600)), Err(CursorError::TooLong));
    }

    #[test]
    fn gap_counts() {
        let a: Cursor = C.parse().unwrap();
        let mut b = a.clone();
        b.seqnum = 5;
        assert_eq!(a.entries_between(&b), Some(3));
        b.seqnum_id = "0".repeat(32);
        assert_eq!(a.entries_between(&b), None);
    }
}
