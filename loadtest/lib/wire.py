"""What a server puts on the wire for one request: a GET over a raw socket, read
byte for byte (head, then the body as framed: Content-Length or chunked), so the
sizes are those a client receives, not what urllib hands back after decoding.
The compression cells record it per server and check that the body decodes to
the file; the HTTPS cells make the same GET over TLS (tls_probe) and record the
protocol, the cipher, whether the server resumes a session, and, in the
new-connection cell, whether it closes the connection after the response.

Decoding uses the standard library for gzip and deflate (zlib); zstd and br use
the `zstd` / `brotli` command-line tools (or the `brotli` Python module) when
installed, and are otherwise recorded as not verified.
"""

import shutil
import socket
import ssl
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


def get(port, path, accept_encoding=None, timeout=READ_TIMEOUT, tls=None,
        connection_close=False, session=None):
    """One GET as wrk sends it (Host, the header; keep-alive unless
    connection_close, since `Connection: close` adds a header to the response).
    tls: an ssl.SSLContext to speak HTTPS with (session: one to resume). Returns
    a dict: status, headers (lower-case names), head_bytes, body_wire_bytes,
    payload; over TLS also version, cipher, session_reused, the session, and
    closed_after (the server closed the connection after the response)."""
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if accept_encoding:
        req += f"Accept-Encoding: {accept_encoding}\r\n"
    if connection_close:
        req += "Connection: close\r\n"
    req = (req + "\r\n").encode()
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock = raw if tls is None else tls.wrap_socket(
            raw, server_hostname="127.0.0.1", session=session)
    except BaseException:
        raw.close()
        raise
    with sock:
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
        out = {"status": status, "headers": headers, "head_bytes": len(head),
               "body_wire_bytes": body_wire, "payload": payload}
        if tls is not None:
            out.update({"version": sock.version(), "cipher": sock.cipher()[0],
                        "alpn": sock.selected_alpn_protocol(),
                        "session_reused": sock.session_reused})
            if connection_close:
                out["closed_after"] = closed_after(sock, r)
            # A TLS 1.3 session ticket arrives after the handshake: read what is
            # there (without waiting long) so the session can be resumed.
            if not connection_close:
                sock.settimeout(0.2)
                try:
                    sock.recv(1)
                except (OSError, ssl.SSLError):
                    pass
            out["session"] = sock.session
    return out


def closed_after(sock, r):
    """True if the server ends the connection (EOF or close_notify) within a
    second after the response, as a `Connection: close` asks."""
    if r.buf:
        return False
    sock.settimeout(1.0)
    try:
        return sock.recv(1) == b""
    except ssl.SSLZeroReturnError:
        return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True     # reset: closed, if not gracefully


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


def tls_probe(port, path, want, ctx, new_connection):
    """The HTTPS cells' check: a GET over TLS as wrk makes it (no ALPN; with
    `Connection: close` in a new-connection cell), the body compared with the
    file, then a second connection offering the first one's session. Returns
    the record kept in the results; "problem" is a text when the response is
    wrong (a server that does not close after `Connection: close` would let wrk
    keep the connection, so the cell would not measure handshakes)."""
    rec = {"problem": None, "connection_close": new_connection}
    try:
        g = get(port, path, tls=ctx, connection_close=new_connection)
    except (OSError, WireError, ValueError) as e:
        rec["problem"] = f"GET {path} over TLS: {e}"
        return rec
    rec.update({"status": g["status"], "version": g["version"], "cipher": g["cipher"],
                "alpn": g["alpn"], "head_bytes": g["head_bytes"],
                "body_wire_bytes": g["body_wire_bytes"],
                "wire_bytes": g["head_bytes"] + g["body_wire_bytes"],
                "connection": g["headers"].get("connection")})
    if g["status"] != 200:
        rec["problem"] = f"GET {path} over TLS: status {g['status']}"
    elif g["payload"] != want:
        rec["problem"] = (f"GET {path} over TLS: {len(g['payload'])} bytes that differ "
                          f"from the file ({len(want)} bytes)")
    elif new_connection and not g.get("closed_after"):
        rec["problem"] = (f"GET {path} with Connection: close: the server kept the "
                          "connection open (wrk would not reconnect)")
    if rec["problem"]:
        return rec
    # Closing without saying `Connection: close`: wrk, which reconnects only when
    # the response says so, then reads the close as a read error, once per request.
    rec["close_without_header"] = bool(
        new_connection and "close" not in (rec["connection"] or "").lower())
    try:
        again = get(port, path, tls=ctx, session=g["session"])
        rec["resumes"] = bool(again["session_reused"])
    except (OSError, WireError, ValueError) as e:
        rec["resumes"] = None
        rec["resume_error"] = str(e)
    return rec
