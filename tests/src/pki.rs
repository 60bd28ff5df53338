//! Certificates made by a test: a CA, server certificates for loopback
//! and client certificates carrying journal-router roles, written as PEM
//! files into a scratch directory.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test certificate authority whose files live in `dir`.
pub struct Pki {
    dir: PathBuf,
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
}

impl Pki {
    /// A new CA called `name`; its certificate is `<dir>/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, ca.pem()).expect("write CA");
        Pki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            issuer: ca,
            ca: path,
        }
    }

    fn issue(&self, file: &str, cn: &str, sans: Vec<SanType>) -> CertFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let files = CertFiles {
            cert: self.dir.join(format!("{}-{file}.pem", self.name)),
            key: self.dir.join(format!("{}-{file}.key", self.name)),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, file: &str) -> CertFiles {
        self.issue(
            file,
            "jr-server",
            vec![
                SanType::DnsName("localhost".try_into().expect("dns name")),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ],
        )
    }

    /// A client certificate with these URI SANs (`jr:agent`,
    /// `jr:agent:<machine-id>`, `jr:reader`).
    pub fn client(&self, file: &str, uris: &[&str]) -> CertFiles {
        let sans = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().expect("URI SAN")))
            .collect();
        self.issue(file, file, sans)
    }
}
