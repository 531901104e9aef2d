//! Mutual TLS between fxpipe's client, the scheduler and the executors.
//!
//! Ballista has no authentication of its own: whoever reaches the scheduler's port can submit
//! any plan, and whoever reaches an executor's Flight port can fetch any job's shuffle files.
//! With a TLS directory every node and the client present a certificate that the cluster's CA
//! signed and accept only peers that do the same, on every connection: client to scheduler
//! (gRPC and the REST API), executor to scheduler, executor to executor (shuffles) and client
//! to executor (results). A TLS directory holds three PEM files, as `fxpipe cluster certs`
//! writes them: `ca.pem` (the CA that signs every member), `cert.pem` (this member's
//! certificate, valid for server and client use) and `key.pem` (its key, mode 0600).
//!
//! Ballista 55 takes a client TLS configuration through its endpoint hook
//! (`with_ballista_override_create_grpc_client_endpoint`), but builds some URLs as `http://`
//! whatever its `use_tls` flag says (the client's scheduler URL, the executor's): the hook here
//! rewrites every endpoint to `https://` before it adds the TLS configuration, so no connection
//! of a TLS cluster is ever made in plain text.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::{EndpointOverrideFn, SessionConfigExt};
use datafusion::prelude::SessionConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// The CA certificate in a TLS directory.
pub const CA_FILE: &str = "ca.pem";
/// This member's certificate.
pub const CERT_FILE: &str = "cert.pem";
/// This member's private key.
pub const KEY_FILE: &str = "key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS directory {dir}: cannot read {file}: {source} (a TLS directory holds ca.pem, cert.pem and key.pem, as `fxpipe cluster certs` writes them)")]
    Read {
        dir: PathBuf,
        file: &'static str,
        source: std::io::Error,
    },
    #[error("TLS directory {dir}: {file} holds no {what} in PEM form")]
    Pem {
        dir: PathBuf,
        file: &'static str,
        what: &'static str,
    },
    #[error("TLS directory {dir}: {detail}")]
    Config { dir: PathBuf, detail: String },
    #[error("cannot build an HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot make certificates: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A member's TLS material, loaded from a TLS directory.
#[derive(Clone)]
pub struct Tls {
    dir: PathBuf,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Tls").field("dir", &self.dir).finish()
    }
}

/// Makes ring the process's rustls crypto provider. The build has both ring and aws-lc-rs
/// (object_store's reqwest brings the latter), and rustls refuses to guess between them.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Tls {
    /// Reads `dir`'s three files and checks they parse; warns when the key is readable by
    /// anyone but its owner.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        install_crypto_provider();
        let read = |file: &'static str| {
            std::fs::read(dir.join(file)).map_err(|source| TlsError::Read {
                dir: dir.to_path_buf(),
                file,
                source,
            })
        };
        let tls = Self {
            dir: dir.to_path_buf(),
            ca: read(CA_FILE)?,
            cert: read(CERT_FILE)?,
            key: read(KEY_FILE)?,
        };
        tls.certificates(CA_FILE, &tls.ca)?;
        tls.certificates(CERT_FILE, &tls.cert)?;
        tls.private_key()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(dir.join(KEY_FILE)) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        key = %dir.join(KEY_FILE).display(),
                        "the TLS key is readable by other users: chmod 600 it"
                    );
                }
            }
        }
        Ok(tls)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn certificates(
        &self,
        file: &'static str,
        pem: &[u8],
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|_| self.pem(file, "certificate"))?;
        if certs.is_empty() {
            return Err(self.pem(file, "certificate"));
        }
        Ok(certs)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.key).map_err(|_| self.pem(KEY_FILE, "private key"))
    }

    fn pem(&self, file: &'static str, what: &'static str) -> TlsError {
        TlsError::Pem {
            dir: self.dir.clone(),
            file,
            what,
        }
    }

    fn config_error(&self, detail: impl std::fmt::Display) -> TlsError {
        TlsError::Config {
            dir: self.dir.clone(),
            detail: detail.to_string(),
        }
    }

    /// A tonic server that answers only clients whose certificate the CA signed.
    pub fn tonic_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// A tonic client that presents this member's certificate and trusts only the CA.
    pub fn tonic_client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
    }

    /// Ballista's endpoint hook: every gRPC or Flight connection goes over `https://` with
    /// this member's certificate.
    pub fn endpoint_override(&self) -> EndpointOverrideFn {
        let client = self.tonic_client();
        Arc::new(move |endpoint: Endpoint| {
            let uri = endpoint.uri();
            let endpoint = if uri.scheme_str() == Some("https") {
                endpoint
            } else {
                let authority = uri
                    .authority()
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_default();
                ballista_core::utils::create_grpc_client_endpoint(
                    format!("https://{authority}"),
                    None,
                )?
            };
            Ok(endpoint.tls_config(client.clone())?)
        })
    }

    /// `config` with every Ballista connection made over mutual TLS.
    pub fn session_config(&self, config: SessionConfig) -> SessionConfig {
        config
            .with_ballista_use_tls(true)
            .with_ballista_override_create_grpc_client_endpoint(self.endpoint_override())
    }

    /// A rustls server configuration that requires a client certificate the CA signed (the
    /// scheduler's gRPC + REST router).
    pub fn rustls_server(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in self.certificates(CA_FILE, &self.ca)? {
            roots.add(cert).map_err(|e| self.config_error(e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .map_err(|e| self.config_error(e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| self.config_error(e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                self.certificates(CERT_FILE, &self.cert)?,
                self.private_key()?,
            )
            .map_err(|e| self.config_error(e))?;
        // gRPC needs HTTP/2; the REST API and probes speak HTTP/1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// An HTTP client for the scheduler's REST API: this member's certificate, only the CA
    /// trusted.
    pub fn rest_client(&self, timeout: Duration) -> Result<reqwest::Client, TlsError> {
        let mut identity = self.cert.clone();
        identity.extend_from_slice(&self.key);
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tls_certs_only([
                reqwest::Certificate::from_pem(&self.ca).map_err(|e| self.config_error(e))?
            ])
            .identity(reqwest::Identity::from_pem(&identity).map_err(|e| self.config_error(e))?)
            .build()
            .map_err(|e| self.config_error(e))
    }
}

/// The scheme of the scheduler's REST API.
pub fn rest_scheme(tls: Option<&Tls>) -> &'static str {
    if tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// A REST client: with `tls`, over mutual TLS; else plain.
pub fn rest_client(tls: Option<&Tls>, timeout: Duration) -> Result<reqwest::Client, TlsError> {
    match tls {
        Some(tls) => tls.rest_client(timeout),
        None => Ok(reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?),
    }
}

/// What `fxpipe cluster certs` wrote.
#[derive(Debug)]
pub struct Written {
    /// One TLS directory per member: `<out>/<host>/` and `<out>/client/`.
    pub members: Vec<PathBuf>,
    /// The CA's key (`<out>/ca-key.pem`): keep it off the nodes.
    pub ca_key: PathBuf,
}

/// Makes a CA and, for each host and for the client, a TLS directory under `out` whose
/// certificate is valid for that host (and for loopback, so a node can be reached locally).
/// Keys are written mode 0600 and the CA's key stays beside, not inside, the directories.
pub fn generate(out: &Path, hosts: &[String], days: u32) -> Result<Written, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let failed = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let now = time_now();
    let until = now + ::time::Duration::days(i64::from(days));
    let ca_key = KeyPair::generate().map_err(failed)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "fxpipe cluster CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now;
    ca.not_after = until;
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
    let issuer = Issuer::new(ca, ca_key);
    write_file(
        &out.join("ca-key.pem"),
        issuer.key().serialize_pem().as_bytes(),
        true,
    )?;
    let mut members = Vec::new();
    let mut names: Vec<String> = hosts.to_vec();
    names.push("client".to_string());
    for name in names {
        let mut alt_names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if name != "client" && !alt_names.contains(&name) {
            alt_names.push(name.clone());
        }
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::new(alt_names).map_err(failed)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("fxpipe {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = now;
        params.not_after = until;
        let cert = params.signed_by(&key, &issuer).map_err(failed)?;
        let dir = out.join(sanitized(&name));
        write_file(&dir.join(CA_FILE), ca_cert.pem().as_bytes(), false)?;
        write_file(&dir.join(CERT_FILE), cert.pem().as_bytes(), false)?;
        write_file(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), true)?;
        members.push(dir);
    }
    Ok(Written {
        members,
        ca_key: out.join("ca-key.pem"),
    })
}

fn time_now() -> ::time::OffsetDateTime {
    ::time::OffsetDateTime::now_utc()
}

/// A host name as a folder name (`*.ec2.internal` becomes `wildcard.ec2.internal`, IPv6
/// colons become dashes).
fn sanitized(name: &str) -> String {
    name.replace('*', "wildcard")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Writes `bytes` to `path`, creating its folder; a key is created mode 0600 (never readable
/// by others, not even for an instant).
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let error = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(error)?;
    file.write_all(bytes).map_err(error)
}
