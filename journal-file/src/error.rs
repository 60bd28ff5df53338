//! The errors of the journal file reader.
//!
//! A whole file that cannot be used is an [`Error`]; a bad object inside an
//! otherwise usable file is not an error but a counted skip (see
//! [`crate::ReadStats`]). [`Error::Unsupported`] is the one a caller is meant
//! to act on: the file uses a feature this reader does not know, so the
//! caller should read it some other way (journalctl).

use std::io;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a journal file ({why})")]
    NotJournal { path: PathBuf, why: &'static str },
    #[error(
        "{path}: journal file uses incompatible features {unknown:#x} that this reader does not know (header flags {flags:#x})"
    )]
    Unsupported {
        path: PathBuf,
        flags: u32,
        unknown: u32,
    },
    #[error("{path}: corrupt at offset {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: &'static str,
    },
}

impl Error {
    /// Whether the reader refused the file for a feature it does not know,
    /// as opposed to damage or an I/O failure.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported { .. })
    }
}

/// What went wrong reading one object; turned into an [`Error`] (with the
/// path) or into a counted skip by the caller.
#[derive(Debug)]
pub(crate) enum Bad {
    Io(io::Error),
    Corrupt { offset: u64, what: &'static str },
}

impl Bad {
    pub(crate) fn corrupt(offset: u64, what: &'static str) -> Bad {
        Bad::Corrupt { offset, what }
    }

    pub(crate) fn into_error(self, path: &std::path::Path) -> Error {
        match self {
            Bad::Io(source) => Error::Io {
                path: path.to_owned(),
                source,
            },
            Bad::Corrupt { offset, what } => Error::Corrupt {
                path: path.to_owned(),
                offset,
                what,
            },
        }
    }
}

impl From<io::Error> for Bad {
    fn from(e: io::Error) -> Self {
        Bad::Io(e)
    }
}
