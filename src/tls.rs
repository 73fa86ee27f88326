//! HTTPS set-up: the certificate chain and key from PEM files (checked at start with
//! one clear error naming the file), rustls' server configuration (ring provider,
//! TLS 1.2 and 1.3, ALPN `http/1.1`, session resumption by cache and tickets), and
//! the reload SIGHUP asks for: new handshakes get the new certificate, connections
//! already open keep theirs, and a reload that fails keeps the old one.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Sessions remembered for resumption by session ID (TLS 1.2), besides tickets.
const SESSION_CACHE: usize = 4096;

/// The two PEM files, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// What is being served: the rustls configuration and the certificate it hands out.
pub struct Tls {
    files: TlsFiles,
    current: Arc<Current>,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The certificate new handshakes get; replaced by a reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner())))
    }
}

/// Why the certificate or key cannot be used: one sentence naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl Tls {
    /// Loads and checks the files, and builds the server configuration.
    pub fn new(files: TlsFiles) -> Result<Tls, TlsError> {
        let key = load(&files)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(key))));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(format!("TLS configuration: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError(format!("TLS tickets: {e}")))?;
        Ok(Tls {
            files,
            current,
            config: Arc::new(config),
        })
    }

    /// The configuration each connection's handshake uses.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// One line about the certificate being served.
    pub fn describe(&self) -> String {
        let key = self.current.0.read().unwrap_or_else(|e| e.into_inner());
        describe(&key, &self.files.cert)
    }

    /// Reads the files again (SIGHUP). On success new handshakes get the new
    /// certificate and one line says which; on failure the old one stays and one
    /// error says why.
    pub fn reload(&self) {
        match load(&self.files) {
            Ok(key) => {
                let line = describe(&key, &self.files.cert);
                *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                log::info!("SIGHUP: TLS certificate reloaded: {line}");
            }
            Err(e) => log::error!("SIGHUP: TLS certificate not reloaded, still serving the previous one: {e}"),
        }
    }
}

/// The chain and key of `files`, checked: a certificate, an unencrypted key of a
/// supported type, and a key that matches the certificate.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(&files.cert, "--tls-cert")?;
    let key_pem = read(&files.key, "--tls-key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error("--tls-cert", &files.cert, e))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "--tls-cert {}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks)",
            files.cert.display()
        )));
    }
    if is_encrypted(&key_pem) {
        return Err(TlsError(format!(
            "--tls-key {}: the key is encrypted; give an unencrypted one (openssl pkey -in KEY -out KEY.plain)",
            files.key.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError(format!(
            "--tls-key {}: no private key in it (expected PEM PKCS#8, PKCS#1 or SEC1)",
            files.key.display()
        )),
        e => pem_error("--tls-key", &files.key, e),
    })?;
    let provider: &CryptoProvider = &rustls::crypto::ring::default_provider();
    let signer = (provider.key_provider.load_private_key(key))
        .map_err(|e| TlsError(format!("--tls-key {}: unusable key: {e}", files.key.display())))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            log::warn!(
                "--tls-key {}: cannot check that it matches the certificate",
                files.key.display()
            )
        }
        Err(e) => {
            return Err(TlsError(format!(
                "--tls-key {} does not match the certificate in --tls-cert {} ({e})",
                files.key.display(),
                files.cert.display()
            )))
        }
    }
    Ok(certified)
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("{flag} {}: cannot read it: {e}", path.display())))
}

fn pem_error(flag: &str, path: &Path, e: pem::Error) -> TlsError {
    TlsError(format!("{flag} {}: not valid PEM: {e:?}", path.display()))
}

/// An encrypted PKCS#8 key, or a legacy OpenSSL one with a `Proc-Type` header.
fn is_encrypted(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED")
}

/// "subject CN=example.com, expires 2027-03-01 12:00:00 UTC (cert.pem)".
fn describe(key: &CertifiedKey, path: &Path) -> String {
    match key.cert.first().and_then(|der| der::subject_and_expiry(der)) {
        Some((subject, expiry)) => format!("subject {subject}, expires {expiry} ({})", path.display()),
        None => format!("a certificate that could not be read for display ({})", path.display()),
    }
}

/// Just enough DER (X.690) to show a certificate's subject common name and its
/// expiry in log lines. rustls has already parsed and checked the certificate; this
/// only reads it for display (a crate for full X.509 parsing would add a quarter of
/// the image's size for two log fields).
mod der {
    /// One TLV at the start of `input`: (tag, contents, rest).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// (subject, "YYYY-MM-DD HH:MM:SS UTC") of a DER certificate.
    pub fn subject_and_expiry(cert: &[u8]) -> Option<(String, String)> {
        let (_, certificate, _) = tlv(cert)?;
        let (_, tbs, _) = tlv(certificate)?;
        let mut rest = tbs;
        let (tag, _, after) = tlv(rest)?;
        if tag == 0xa0 {
            rest = after; // explicit version
        }
        let (_, _, rest) = tlv(rest)?; // serial number
        let (_, _, rest) = tlv(rest)?; // signature algorithm
        let (_, _, rest) = tlv(rest)?; // issuer
        let (_, validity, rest) = tlv(rest)?;
        let (_, subject, _) = tlv(rest)?;
        let (_, _, validity_rest) = tlv(validity)?; // notBefore
        let (tag, not_after, _) = tlv(validity_rest)?;
        Some((common_name(subject), time(tag, not_after)?))
    }

    /// `CN=...` of a Name, or "(no common name)".
    fn common_name(mut name: &[u8]) -> String {
        const CN: &[u8] = &[0x55, 0x04, 0x03];
        while let Some((_, set, rest)) = tlv(name) {
            name = rest;
            let Some((_, attr, _)) = tlv(set) else { continue };
            let Some((_, oid, value)) = tlv(attr) else { continue };
            if oid == CN {
                if let Some((_, text, _)) = tlv(value) {
                    return format!("CN={}", String::from_utf8_lossy(text));
                }
            }
        }
        "(no common name)".to_string()
    }

    /// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as text.
    fn time(tag: u8, t: &[u8]) -> Option<String> {
        let t = std::str::from_utf8(t).ok()?;
        let full = match tag {
            0x17 if t.len() >= 12 => format!("{}{t}", if &t[..2] < "50" { "20" } else { "19" }),
            0x18 if t.len() >= 14 => t.to_string(),
            _ => return None,
        };
        let d = |a: usize, b: usize| full.get(a..b);
        Some(format!(
            "{}-{}-{} {}:{}:{} UTC",
            d(0, 4)?,
            d(4, 6)?,
            d(6, 8)?,
            d(8, 10)?,
            d(10, 12)?,
            d(12, 14)?
        ))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn reads_subject_and_expiry_of_a_generated_certificate() {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["example.test".to_string()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "example.test");
            params.not_after = rcgen::date_time_ymd(2031, 7, 9);
            let cert = params.self_signed(&key).unwrap();
            let (subject, expiry) = super::subject_and_expiry(cert.der()).unwrap();
            assert_eq!(subject, "CN=example.test");
            assert_eq!(expiry, "2031-07-09 00:00:00 UTC");
            assert_eq!(super::subject_and_expiry(&cert.der()[..40]), None, "truncated");
            assert_eq!(super::subject_and_expiry(b""), None);
        }
    }
}
