//! HTTPS over real sockets with a real TLS client (rustls): start-up checks of the
//! certificate and key, files, ranges, conditionals, keep-alive and pipelining over
//! TLS, stalled handshakes, plain HTTP to the TLS port, certificate reload.

use crate::support::{read_response, write, Response, TestServer, BIN};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threadserve::tls::{Tls, TlsFiles};

/// A self-signed certificate for `localhost` and its key, as PEM.
pub fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn put(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// An RSA key in PKCS#1 and an EC key in SEC1, with self-signed certificates, made
/// by openssl (ring cannot generate RSA keys; .ci/run installs openssl).
fn openssl_pair(dir: &Path, kind: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{kind}.key"));
    let cert = dir.join(format!("{kind}.crt"));
    let genkey: Vec<&str> = match kind {
        "rsa" => vec!["genrsa", "-traditional", "-out", key.to_str().unwrap(), "2048"],
        _ => vec![
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            key.to_str().unwrap(),
        ],
    };
    assert!(Command::new("openssl")
        .args(&genkey)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success());
    let req = [
        "req",
        "-new",
        "-x509",
        "-key",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
    ];
    assert!(Command::new("openssl").args(req).status().unwrap().success());
    (cert, key)
}

fn start(root: &Path, cert: &Path, key: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args([root.to_str().unwrap(), "--port", "0", "--log-format", "off"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    std::mem::forget(out);
    (child, line)
}

#[test]
fn every_supported_key_format_starts_an_https_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for (name, alg) in [
        ("p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("ed25519", &rcgen::PKCS_ED25519),
    ] {
        let (cert, key) = self_signed(alg);
        pairs.push((
            put(dir.path(), &format!("{name}.crt"), &cert),
            put(dir.path(), &format!("{name}.key"), &key),
        ));
    }
    pairs.push(openssl_pair(dir.path(), "rsa"));
    pairs.push(openssl_pair(dir.path(), "ec"));
    let key_kinds: Vec<String> = pairs
        .iter()
        .map(|(_, k)| std::fs::read_to_string(k).unwrap().lines().next().unwrap().to_string())
        .collect();
    assert!(
        key_kinds.iter().any(|k| k.contains("BEGIN RSA PRIVATE KEY")),
        "PKCS#1 covered: {key_kinds:?}"
    );
    assert!(
        key_kinds.iter().any(|k| k.contains("BEGIN EC PRIVATE KEY")),
        "SEC1 covered: {key_kinds:?}"
    );
    assert!(
        key_kinds.iter().any(|k| k.contains("BEGIN PRIVATE KEY")),
        "PKCS#8 covered: {key_kinds:?}"
    );
    for (cert, key) in pairs {
        let (mut child, line) = start(dir.path(), &cert, &key);
        assert!(line.contains(" at https://127.0.0.1:"), "{}: {line}", key.display());
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn bad_certificates_and_keys_fail_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (_, other_key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let cert_p = put(dir.path(), "cert.pem", &cert);
    let key_p = put(dir.path(), "key.pem", &key);
    let other_p = put(dir.path(), "other.pem", &other_key);
    let empty = put(dir.path(), "empty.pem", "");
    let encrypted = put(
        dir.path(),
        "enc.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let missing = dir.path().join("missing.pem");
    let root = dir.path().to_str().unwrap();
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "cert_without_key",
            vec!["--tls-cert".into(), s(&cert_p)],
            vec!["--tls-cert needs --tls-key"],
        ),
        (
            "key_without_cert",
            vec!["--tls-key".into(), s(&key_p)],
            vec!["--tls-key needs --tls-cert"],
        ),
        (
            "unreadable_cert",
            vec!["--tls-cert".into(), s(&missing), "--tls-key".into(), s(&key_p)],
            vec!["--tls-cert", "missing.pem", "cannot read"],
        ),
        (
            "unreadable_key",
            vec!["--tls-cert".into(), s(&cert_p), "--tls-key".into(), s(&missing)],
            vec!["--tls-key", "missing.pem", "cannot read"],
        ),
        (
            "no_certificate",
            vec!["--tls-cert".into(), s(&key_p), "--tls-key".into(), s(&key_p)],
            vec!["--tls-cert", "key.pem", "no certificate"],
        ),
        (
            "empty_cert",
            vec!["--tls-cert".into(), s(&empty), "--tls-key".into(), s(&key_p)],
            vec!["empty.pem", "no certificate"],
        ),
        (
            "no_key",
            vec!["--tls-cert".into(), s(&cert_p), "--tls-key".into(), s(&cert_p)],
            vec!["--tls-key", "cert.pem", "no private key"],
        ),
        (
            "encrypted_key",
            vec!["--tls-cert".into(), s(&cert_p), "--tls-key".into(), s(&encrypted)],
            vec!["enc.pem", "encrypted"],
        ),
        (
            "mismatched_key",
            vec!["--tls-cert".into(), s(&cert_p), "--tls-key".into(), s(&other_p)],
            vec!["other.pem", "does not match", "cert.pem"],
        ),
    ];
    for (name, args, wants) in cases {
        let out = Command::new(BIN)
            .arg(root)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for want in wants {
            assert!(stderr.contains(want), "{name}: {stderr}");
        }
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

/// A server over TLS with a fresh self-signed certificate; (server, client config).
fn tls_server(
    tweak: impl FnOnce(&mut threadserve::config::Config),
) -> (TestServer, Arc<rustls::ClientConfig>, Vec<u8>) {
    let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let dir = tempfile::tempdir().unwrap().keep();
    let files = TlsFiles {
        cert: put(&dir, "cert.pem", &cert),
        key: put(&dir, "key.pem", &key),
    };
    let tls = Arc::new(Tls::new(files).unwrap());
    let server = TestServer::start(|c| {
        c.tls = Some(tls);
        tweak(c);
    });
    let der = pem_der(&cert);
    (server, client_config(&der), der)
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

fn client_config(trusted: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(trusted.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

type Tlsc = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(server: &TestServer, config: &Arc<rustls::ClientConfig>) -> Tlsc {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    rustls::StreamOwned::new(conn, server.connect())
}

fn get_tls(s: &mut BufReader<Tlsc>, path: &str, extra: &str) -> Response {
    write!(s.get_mut(), "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").unwrap();
    read_response(s, false).expect("a response")
}

#[test]
fn files_ranges_conditionals_and_keep_alive_over_tls() {
    let (server, client, _) = tls_server(|_| {});
    let big: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    write(&server.root(), "big.bin", &big);
    let mut s = BufReader::new(connect(&server, &client));
    let res = get_tls(&mut s, "/big.bin", "");
    assert_eq!(res.status, 200);
    assert!(res.body == big, "5 MiB over TLS, byte for byte");
    for i in 0..100 {
        let res = get_tls(&mut s, "/hello.txt", "");
        assert_eq!(
            (res.status, res.text().as_str()),
            (200, "hello, world\n"),
            "request {i}"
        );
    }
    let res = get_tls(&mut s, "/big.bin", "Range: bytes=1000-1009\r\n");
    assert_eq!((res.status, &res.body[..]), (206, &big[1000..1010]));
    let etag = res.header("etag").unwrap().to_string();
    let res = get_tls(&mut s, "/big.bin", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(res.status, 304);
    let res = get_tls(&mut s, "/hello.txt", "Accept-Encoding: gzip\r\n");
    assert_eq!(res.status, 200);
    assert_eq!(s.get_ref().conn.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn pipelined_requests_over_tls_are_answered_in_order() {
    let (server, client, _) = tls_server(|_| {});
    let mut s = BufReader::new(connect(&server, &client));
    let mut batch = String::new();
    for p in ["/a.txt", "/b.txt", "/c.txt", "/hello.txt"] {
        batch.push_str(&format!("GET {p} HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    }
    s.get_mut().write_all(batch.as_bytes()).unwrap();
    for want in ["A", "BB", "CCC", "hello, world\n"] {
        assert_eq!(read_response(&mut s, false).unwrap().text(), want);
    }
}

#[test]
fn stalled_handshakes_are_cut_at_the_head_deadline_and_starve_nobody() {
    let _turn = crate::support::heavy();
    let (server, client, _) = tls_server(|c| c.limits.head_timeout = Duration::from_secs(1));
    // 500 clients that send half a ClientHello and stall.
    let stalled: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
            s
        })
        .collect();
    let t = Instant::now();
    for _ in 0..20 {
        let mut s = BufReader::new(connect(&server, &client));
        assert_eq!(get_tls(&mut s, "/hello.txt", "").status, 200);
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "normal clients waited {:?}",
        t.elapsed()
    );
    // Every stalled one is closed soon after its deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    for mut s in stalled {
        s.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(100),
        ))
        .unwrap();
        let mut buf = [0u8; 64];
        let cut = matches!(s.read(&mut buf), Ok(0) | Err(_));
        assert!(
            cut && Instant::now() < deadline + Duration::from_secs(1),
            "a stalled handshake was kept"
        );
    }
}

#[test]
fn plain_http_to_the_tls_port_gets_a_quick_400() {
    let (server, _, _) = tls_server(|_| {});
    let t = Instant::now();
    let res = server.get("/hello.txt");
    assert_eq!(res.status, 400);
    assert!(res.text().contains("https://"), "{}", res.text());
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_reloaded_certificate_reaches_new_connections_and_old_ones_keep_going() {
    let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: put(dir.path(), "cert.pem", &cert),
        key: put(dir.path(), "key.pem", &key),
    };
    let tls = Arc::new(Tls::new(files.clone()).unwrap());
    let server = TestServer::start(|c| c.tls = Some(tls));
    let old_der = pem_der(&cert);
    let mut old = BufReader::new(connect(&server, &client_config(&old_der)));
    assert_eq!(get_tls(&mut old, "/a.txt", "").status, 200);
    // A broken file first: the reload fails and the old certificate stays.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    server.handle.reload();
    let mut again = BufReader::new(connect(&server, &client_config(&old_der)));
    assert_eq!(
        get_tls(&mut again, "/a.txt", "").status,
        200,
        "failed reload keeps the old certificate"
    );
    let (cert2, key2) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    std::fs::write(&files.cert, &cert2).unwrap();
    std::fs::write(&files.key, &key2).unwrap();
    server.handle.reload();
    let new_der = pem_der(&cert2);
    let mut fresh = BufReader::new(connect(&server, &client_config(&new_der)));
    assert_eq!(get_tls(&mut fresh, "/b.txt", "").status, 200);
    let presented = fresh.get_ref().conn.peer_certificates().unwrap()[0].to_vec();
    assert!(presented == new_der, "a new connection gets the new certificate");
    assert_eq!(
        get_tls(&mut old, "/c.txt", "").text(),
        "CCC",
        "the old connection keeps going"
    );
}
