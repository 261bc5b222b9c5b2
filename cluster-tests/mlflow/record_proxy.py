#!/usr/bin/env python3
"""Recording reverse proxy for MLflow REST traffic (stdlib only).

Every request received on --listen is forwarded unchanged to --target, the
answer is passed back to the caller, and the exchange is appended to --out as
one JSON object per line:

    {"seq": 1, "method": "POST", "path": "/api/2.0/mlflow/experiments/create",
     "request_content_type": "application/json", "request_body": "...",
     "request_body_encoding": "text", "status": 200,
     "response_content_type": "application/json", "response_body": "...",
     "response_body_encoding": "text"}

Bodies that are valid UTF-8 are stored as text, anything else as base64
("..._encoding": "base64"). An empty body is "" with encoding "text".

Usage:
    python3 record_proxy.py --target http://127.0.0.1:5000 \
        --listen 127.0.0.1:5599 --out exchanges.jsonl
"""

import argparse
import base64
import http.client
import http.server
import json
import sys
import threading
import urllib.parse

# Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones this proxy recomputes.
_SKIP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def _encode_body(raw):
    if not raw:
        return "", "text"
    try:
        return raw.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


class _Recorder:
    """Appends exchanges to a file; safe for concurrent handler threads."""

    def __init__(self, path):
        self._mu = threading.Lock()  # guards _seq and writes to _f
        self._seq = 0
        self._f = open(path, "a", encoding="utf-8")

    def write(self, entry):
        with self._mu:
            self._seq += 1
            line = {"seq": self._seq}
            line.update(entry)
            self._f.write(json.dumps(line, sort_keys=False) + "\n")
            self._f.flush()

    def close(self):
        with self._mu:
            self._f.close()


def _make_handler(target, recorder, timeout):
    target_url = urllib.parse.urlsplit(target)
    if target_url.scheme not in ("http", "https"):
        raise SystemExit(f"record_proxy: unsupported target scheme {target_url.scheme!r}")
    base_path = target_url.path.rstrip("/")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("record_proxy: " + (fmt % args) + "\n")

        def _read_request_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size_line = self.rfile.readline()
                    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        # Trailer section ends with an empty line.
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # CRLF after each chunk
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length", "0") or "0")
            return self.rfile.read(length) if length else b""

        def _forward(self):
            body = self._read_request_body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _SKIP_HEADERS}
            headers["Host"] = target_url.netloc
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))

            conn_cls = (
                http.client.HTTPSConnection
                if target_url.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = conn_cls(target_url.netloc, timeout=timeout)
            try:
                conn.request(self.command, base_path + self.path, body=body, headers=headers)
                resp = conn.getresponse()
                resp_body = resp.read()
                status, reason = resp.status, resp.reason
                resp_headers = resp.getheaders()
            except OSError as e:
                status, reason = 502, "Bad Gateway"
                resp_body = json.dumps(
                    {"error_code": "TEMPORARILY_UNAVAILABLE", "message": f"record_proxy: {e}"}
                ).encode()
                resp_headers = [("Content-Type", "application/json")]
            finally:
                conn.close()

            req_text, req_enc = _encode_body(body)
            resp_text, resp_enc = _encode_body(resp_body)
            resp_ct = next((v for k, v in resp_headers if k.lower() == "content-type"), None)
            recorder.write(
                {
                    "method": self.command,
                    "path": self.path,
                    "request_content_type": self.headers.get("Content-Type"),
                    "request_body": req_text,
                    "request_body_encoding": req_enc,
                    "status": status,
                    "response_content_type": resp_ct,
                    "response_body": resp_text,
                    "response_body_encoding": resp_enc,
                }
            )

            self.send_response(status, reason)
            for k, v in resp_headers:
                if k.lower() not in _SKIP_HEADERS:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(resp_body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp_body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

    return Handler


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--target", required=True, help="base URL to forward to, e.g. http://127.0.0.1:5000"
    )
    ap.add_argument("--listen", default="127.0.0.1:5599", help="host:port to listen on")
    ap.add_argument("--out", required=True, help="JSON-lines file to append exchanges to")
    ap.add_argument("--timeout", type=float, default=120.0, help="upstream timeout in seconds")
    args = ap.parse_args(argv)

    host, _, port = args.listen.rpartition(":")
    recorder = _Recorder(args.out)
    server = http.server.ThreadingHTTPServer(
        (host or "127.0.0.1", int(port)), _make_handler(args.target, recorder, args.timeout)
    )
    sys.stderr.write(f"record_proxy: {args.listen} -> {args.target}, recording to {args.out}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        recorder.close()


if __name__ == "__main__":
    main()
