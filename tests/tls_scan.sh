#!/usr/bin/env bash
# TLS configuration check with a third-party scanner (testssl.sh, Debian's package):
# the release binary serves HTTPS with a fresh ECDSA P-256 certificate, testssl.sh
# scans protocols and cipher categories, and the step fails if any protocol below
# TLS 1.2 or any weak cipher category (NULL, anonymous, export, low, 3DES/IDEA,
# obsoleted CBC) is offered, or if TLS 1.2 or 1.3 is missing.
set -euo pipefail
BIN=${THREADSERVE_BIN:-target/release/threadserve}
TESTSSL=$(command -v testssl || command -v testssl.sh)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
mkdir "$work/root" && echo hello > "$work/root/index.html"
"$BIN" "$work/root" --port 0 --log-format off --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 50); do grep -q "https://" "$work/out" 2>/dev/null && break; sleep 0.1; done
addr=$(grep -o 'https://[^ ]*' "$work/out" | head -1 | sed 's|https://||')
[ -n "$addr" ] || { echo "FAIL: the server did not start"; cat "$work/err"; exit 1; }
echo "scanning $addr with $("$TESTSSL" --version 2>/dev/null | grep -o 'testssl.sh *[0-9.a-z+~-]*' | head -1)"
"$TESTSSL" --quiet --color 0 --warnings off --protocols --std --jsonfile "$work/scan.json" "$addr" > "$work/scan.txt" 2>&1 || true
python3 - "$work/scan.json" <<'PY'
import json, sys
findings = {f["id"]: f["finding"] for f in json.load(open(sys.argv[1]))}
# Obsoleted CBC ciphers are "cipherlist_AVERAGE" in testssl.sh 3.0, "..._OBSOLETED" later.
if "cipherlist_OBSOLETED" not in findings and "cipherlist_AVERAGE" in findings:
    findings["cipherlist_OBSOLETED"] = findings["cipherlist_AVERAGE"]
must_not = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "cipherlist_NULL", "cipherlist_aNULL",
            "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_OBSOLETED"]
must = ["TLS1_2", "TLS1_3"]
bad = []
for key in must_not:
    f = findings.get(key, "missing from the scan")
    print(f"{key:22} {f}")
    if not f.startswith("not offered"):
        bad.append(key)
for key in must:
    f = findings.get(key, "missing from the scan")
    print(f"{key:22} {f}")
    if not f.startswith("offered"):
        bad.append(key)
if bad:
    sys.exit("FAIL: " + ", ".join(bad))
print("ok: TLS 1.2 and 1.3 only, no weak cipher category")
PY
