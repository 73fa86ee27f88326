"""What a server puts on the wire for one request: a GET over a raw socket, read
byte for byte (head, then the body as framed: Content-Length or chunked), so the
sizes are those a client receives, not what urllib hands back after decoding.
The compression cells record it per server and check that the body decodes to
the file.

Decoding uses the standard library for gzip and deflate (zlib); zstd and br use
the `zstd` / `brotli` command-line tools (or the `brotli` Python module) when
installed, and are otherwise recorded as not verified.
"""

import shutil
import socket
import subprocess
import zlib

READ_TIMEOUT = 10.0
MAX_HEAD = 64 * 1024


class WireError(Exception):
    pass


class Reader:
    """Buffered reads from a socket: lines for the head, exact counts for bodies."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise WireError("connection closed mid-response")
        self.buf += chunk

    def until(self, marker, limit):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise WireError(f"no {marker!r} within {limit} bytes")
            self.fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def read_chunked(r):
    """Returns (payload, bytes on the wire including the chunk framing)."""
    payload, wire = [], 0
    while True:
        line = r.until(b"\r\n", 1024)
        wire += len(line)
        n = int(line.split(b";")[0].strip(), 16)
        if n == 0:
            while True:                      # trailer fields, then the empty line
                t = r.until(b"\r\n", MAX_HEAD)
                wire += len(t)
                if t == b"\r\n":
                    return b"".join(payload), wire
        data = r.exactly(n + 2)
        wire += n + 2
        payload.append(data[:n])


def get(port, path, accept_encoding, timeout=READ_TIMEOUT):
    """One keep-alive GET as wrk sends it (Host, the header; no Connection:
    close, which would add a header to the response). Returns a dict: status,
    headers (lower-case names), head_bytes, body_wire_bytes, payload."""
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           f"Accept-Encoding: {accept_encoding}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(req)
        r = Reader(sock)
        head = r.until(b"\r\n\r\n", MAX_HEAD)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise WireError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                k = k.strip().lower()
                headers[k] = f"{headers[k]}, {v.strip()}" if k in headers else v.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            payload, body_wire = read_chunked(r)
        elif "content-length" in headers:
            payload = r.exactly(int(headers["content-length"]))
            body_wire = len(payload)
        else:
            raise WireError("neither Content-Length nor chunked: cannot tell the end")
    return {"status": status, "headers": headers, "head_bytes": len(head),
            "body_wire_bytes": body_wire, "payload": payload}


def run_decoder(cmd, data):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise ValueError(p.stderr.decode(errors="replace").strip())
    return p.stdout


def decode(coding, data):
    """The decoded bytes, or None when no decoder for `coding` is installed.
    Raises ValueError (or zlib.error) on a body that does not decode."""
    if coding in ("", "identity"):
        return data
    if coding in ("gzip", "x-gzip"):
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if coding == "deflate":          # RFC 9110: zlib format; some send raw deflate
        try:
            return zlib.decompress(data)
        except zlib.error:
            return zlib.decompress(data, -zlib.MAX_WBITS)
    if coding == "zstd":
        return run_decoder(["zstd", "-d", "-c", "-q"], data) if shutil.which("zstd") else None
    if coding == "br":
        try:
            import brotli   # optional; not in the standard library
            return brotli.decompress(data)
        except ImportError:
            pass
        return run_decoder(["brotli", "-d", "-c"], data) if shutil.which("brotli") else None
    raise ValueError(f"unknown coding {coding!r}")


def probe(port, path, accept_encoding, want):
    """GETs path with the Accept-Encoding and checks it against `want` (the
    file's bytes). Returns the record kept in the results; its "problem" is a
    text when the response is wrong (not 200, not an accepted coding, does not
    decode to the file), else None."""
    rec = {"accept_encoding": accept_encoding, "problem": None}
    try:
        g = get(port, path, accept_encoding)
    except (OSError, WireError, ValueError) as e:
        rec["problem"] = f"GET {path}: {e}"
        return rec
    h = g["headers"]
    coding = h.get("content-encoding", "identity").strip().lower()
    rec.update({
        "status": g["status"], "content_encoding": coding,
        "content_type": h.get("content-type"), "vary": h.get("vary"),
        "content_length": int(h["content-length"]) if "content-length" in h else None,
        "chunked": "chunked" in h.get("transfer-encoding", "").lower(),
        "head_bytes": g["head_bytes"], "body_wire_bytes": g["body_wire_bytes"],
        "payload_bytes": len(g["payload"]),
        "wire_bytes": g["head_bytes"] + g["body_wire_bytes"],
        "file_bytes": len(want),
    })
    accepted = [c.split(";")[0].strip() for c in accept_encoding.split(",")]
    if g["status"] != 200:
        rec["problem"] = f"GET {path}: status {g['status']}"
    elif coding not in accepted + ["identity"]:
        rec["problem"] = f"GET {path}: Content-Encoding {coding} was not accepted"
    else:
        try:
            out = decode(coding, g["payload"])
        except (ValueError, zlib.error, OSError, subprocess.TimeoutExpired) as e:
            rec["problem"] = f"GET {path}: {coding} body does not decode: {e}"
            return rec
        if out is None:
            rec["verified"] = f"not decoded (no {coding} decoder installed)"
        elif out != want:
            rec["problem"] = (f"GET {path}: {coding} body decodes to {len(out)} bytes "
                              f"that differ from the file ({len(want)} bytes)")
        else:
            rec["verified"] = "decodes to the file"
    return rec
