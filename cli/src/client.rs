//! The connection to jr-server's Query service.

use anyhow::Context as _;
use jr_proto::v1::query_client::QueryClient;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

pub type Client = QueryClient<Channel>;

/// Largest response accepted: an entry may carry a message as large as
/// agents may ship.
const MAX_RESPONSE_BYTES: usize = 256 << 20;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects to `url`; the error names the server.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid server URL {url:?}"))?
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to jr-server at {url}"))?;
    Ok(QueryClient::new(channel)
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip))
}

/// A status as the operator should read it.
pub fn status_line(s: &tonic::Status) -> String {
    let msg = s.message().replace('\n', " ");
    match s.code() {
        Code::InvalidArgument => msg,
        Code::Unavailable => format!("jr-server unavailable: {msg}"),
        Code::Unimplemented => "jr-server does not offer the query service (too old?)".to_owned(),
        code => format!("jr-server: {msg} ({code:?})"),
    }
}

/// Whether a follow stream that ended with `s` is worth reopening.
pub fn retriable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Aborted | Code::Internal
    )
}
