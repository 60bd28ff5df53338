//! The connection to jr-server's Query service: plain text only to
//! loopback (or with `--insecure`), TLS for `https://` with the system
//! trust store plus `--ca`, mutual TLS with `--cert`/`--key`, and a bearer
//! token (`--token`, `--token-file`) on every call.

use anyhow::Context as _;
use jr_agent::channel::{check_url, ClientAuth};
use jr_proto::v1::query_client::QueryClient;
use std::path::PathBuf;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

pub type Client = QueryClient<InterceptedService<Channel, Bearer>>;

/// TLS and credential options, global to every subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// PEM CA certificate(s) trusted for an https:// server, in addition to
    /// the system trust store.
    #[arg(long, global = true, env = "JR_CA", value_name = "PATH")]
    pub ca: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (needs --key).
    #[arg(long, global = true, env = "JR_CERT", value_name = "PATH")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --cert.
    #[arg(long, global = true, env = "JR_KEY", value_name = "PATH")]
    pub key: Option<PathBuf>,

    /// Bearer token with the reader role (prefer --token-file: a command
    /// line is visible to other users).
    #[arg(long, global = true, env = "JR_TOKEN", value_name = "TOKEN")]
    pub token: Option<String>,

    /// File holding the bearer token.
    #[arg(long, global = true, env = "JR_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Allow plain http:// to a server that is not on loopback.
    #[arg(long, global = true, env = "JR_INSECURE")]
    pub insecure: bool,
}

/// Adds the bearer token, if any, to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A connected channel to `url` and the interceptor that carries the
/// token; errors name the server and say what is wrong.
pub async fn channel(url: &str, creds: &ConnectArgs) -> anyhow::Result<(Channel, Bearer)> {
    check_url(url, creds.insecure)
        .map_err(|e| anyhow::anyhow!("invalid server URL {url:?}: {e}"))?;
    if creds.cert.is_some() != creds.key.is_some() {
        anyhow::bail!("--cert and --key go together");
    }
    if creds.token.is_some() && creds.token_file.is_some() {
        anyhow::bail!("give --token or --token-file, not both");
    }
    let auth = ClientAuth {
        ca: creds.ca.clone(),
        cert: creds.cert.clone(),
        key: creds.key.clone(),
        token: creds.token.clone(),
        token_file: creds.token_file.clone(),
    };
    let bearer = Bearer(auth.bearer()?);
    let channel = auth
        .endpoint(url)?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("cannot connect to jr-server at {url}"))?;
    Ok((channel, bearer))
}

/// Largest response accepted: an entry may carry a message as large as
/// agents may ship.
const MAX_RESPONSE_BYTES: usize = 256 << 20;
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects to `url`; the error names the server.
pub async fn connect(url: &str, creds: &ConnectArgs) -> anyhow::Result<Client> {
    let (channel, bearer) = channel(url, creds).await?;
    Ok(QueryClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip))
}

/// A status as the operator should read it.
pub fn status_line(s: &tonic::Status) -> String {
    let mut msg = s.message().replace('\n', " ");
    // A transport failure (a refused TLS handshake, say) keeps its reason
    // in the source chain: "received fatal alert: UnknownCA".
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        msg = format!("{msg}: {e}");
        source = e.source();
    }
    match s.code() {
        Code::InvalidArgument => msg,
        Code::Unavailable => format!("jr-server unavailable: {msg}"),
        Code::Unimplemented => "jr-server does not offer the query service (too old?)".to_owned(),
        Code::Unauthenticated => format!("jr-server refused the credentials: {msg}"),
        Code::PermissionDenied => format!("jr-server: not allowed: {msg}"),
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
