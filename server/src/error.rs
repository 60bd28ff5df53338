//! The errors an ingest session can end with, and their one mapping to gRPC
//! status codes.
//!
//! The mapping is the contract with agents: `INVALID_ARGUMENT` and
//! `FAILED_PRECONDITION` mean the agent sent something wrong and must not
//! resend it unchanged; `ABORTED` (fenced by a newer session) and
//! `UNAVAILABLE` (storage trouble, shutdown) are retriable after a
//! reconnect. Storage errors never reach clients with their SQL text: the
//! detail is logged on the server.

use thiserror::Error;
use tonic::Status;

#[derive(Debug, Error)]
pub enum Error {
    /// Malformed input: bad machine id, garbage cursor, seq out of order,
    /// batch over the limits.
    #[error("{0}")]
    InvalidArgument(String),
    /// Well-formed input in the wrong place: a batch before Hello, a batch
    /// that does not continue from the committed cursor.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A message over `--max-message-bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// The agent's credential does not allow what it asked for (a Hello
    /// for a machine its credential is not bound to).
    #[error("{0}")]
    PermissionDenied(String),
    /// A newer session for the same machine took over.
    #[error("superseded by a newer session for machine {machine_id}")]
    Superseded { machine_id: String },
    /// The database refused a commit; the batch was not stored. The
    /// detail is in the server's log, not in the error.
    #[error("storage error; the batch was not stored")]
    Storage,
    /// The agent's side of the stream broke or closed early; nobody is
    /// left to tell.
    #[error("the agent went away")]
    ClientGone,
    /// The writer has stopped (server shutting down).
    #[error("server is shutting down")]
    ShuttingDown,
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::TooLarge(m) => Status::resource_exhausted(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            e @ Error::Superseded { .. } => Status::aborted(e.to_string()),
            Error::Storage => Status::unavailable(
                "the server could not store the batch (storage error); reconnect and resend",
            ),
            Error::ShuttingDown => Status::unavailable("server is shutting down; reconnect later"),
            Error::ClientGone => Status::cancelled("the agent went away"),
        }
    }
}

/// Shortens input echoed back in an error message.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn storage_errors_hide_sql() {
        let s: Status = Error::Storage.into();
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("storage error"));
    }

    #[test]
    fn superseded_names_the_machine() {
        let s: Status = Error::Superseded {
            machine_id: "ab".repeat(16),
        }
        .into();
        assert_eq!(s.code(), Code::Aborted);
        assert!(s.message().contains(&"ab".repeat(16)));
    }

    #[test]
    fn quote_cuts_long_input_on_a_char_boundary() {
        let q = quote(&"é".repeat(200));
        assert!(q.contains("400 bytes"));
    }
}
