//! Errors of the query service and their one mapping to gRPC status codes.
//!
//! A request the server cannot run is `INVALID_ARGUMENT` with a message
//! meant for the operator (it names the flag's value that is wrong). A
//! storage failure is `UNAVAILABLE` without SQL text: the detail is logged.

use thiserror::Error;
use tonic::Status;

#[derive(Debug, Error)]
pub enum QueryError {
    /// The request cannot be run as given.
    #[error("{0}")]
    Invalid(String),
    /// Reading the store failed.
    #[error("storage error: {0}")]
    Storage(#[from] sqlx::Error),
    /// The server is stopping; a follower should reconnect.
    #[error("server is shutting down; reconnect to go on following")]
    ShuttingDown,
}

impl QueryError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        QueryError::Invalid(msg.into())
    }
}

impl From<QueryError> for Status {
    fn from(e: QueryError) -> Status {
        match e {
            QueryError::Invalid(m) => Status::invalid_argument(m),
            e @ QueryError::ShuttingDown => Status::unavailable(e.to_string()),
            e @ QueryError::Storage(_) => {
                tracing::error!(error = %e, "query failed");
                Status::unavailable("the server could not read the store; see its log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn storage_errors_hide_sql() {
        let s: Status = QueryError::Storage(sqlx::Error::Protocol("SELECT secret".into())).into();
        assert_eq!(s.code(), Code::Unavailable);
        assert!(!s.message().contains("SELECT"));
        let s: Status = QueryError::invalid("bad regex").into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "bad regex");
    }
}
