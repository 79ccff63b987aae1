//! A throwaway certificate authority for tests of TLS: a CA and a server certificate it issued
//! for `localhost` and `127.0.0.1`, written as PEM files into a temp dir of their own.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA and the server certificate it issued (see the module docs).
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The CA's certificate, PEM: what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate, PEM.
    pub cert: PathBuf,
    /// The server's private key, PEM (unencrypted PKCS#8).
    pub key: PathBuf,
}

impl TestPki {
    /// A new CA called `name`, and a server certificate it issued.
    pub fn new(name: &str) -> std::io::Result<TestPki> {
        let fail = |e: rcgen::Error| std::io::Error::other(e.to_string());
        let dir = tempfile::tempdir()?;
        let ca_key = KeyPair::generate().map_err(fail)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca_cert = ca_params.self_signed(&ca_key).map_err(fail)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().map_err(fail)?;
        let server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(fail)?;
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .map_err(fail)?;
        let pki = TestPki {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            dir,
        };
        std::fs::write(&pki.ca, ca_cert.pem())?;
        std::fs::write(&pki.cert, server_cert.pem())?;
        std::fs::write(&pki.key, server_key.serialize_pem())?;
        Ok(pki)
    }

    /// The directory the files are in (removed when the `TestPki` is dropped).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
