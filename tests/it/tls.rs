//! HTTPS: start-up checks of the certificate and key, each with one clear line.

use crate::support::BIN;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
