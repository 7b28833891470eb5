"""A loopback HTTP proxy between a client and a real registry that injects faults.

Run as a process: ``python faultproxy.py --host 127.0.0.1 --port 0 --upstream URL``; it
prints ``PORT`` when listening. Faults are set while it runs, through its own endpoints:

- ``POST /__faults__`` with a JSON list of rules (replaces the rules); each rule has a
  ``match`` (substring of ``METHOD path``), optionally ``range`` (a substring the
  request's ``Range`` header must hold), ``times`` (how often it fires; -1 always), and
  one action: ``status`` (+ ``retry_after``, ``www_authenticate``) answers that status instead of forwarding;
  ``cut_after`` sends that many body bytes and then drops the connection; ``flip_byte``
  inverts the body byte at that offset; ``ignore_range`` forwards without the Range
  header; ``redirect`` answers 307 to that base URL plus the original path;
  ``delay`` sleeps that many seconds between 64 KiB chunks; ``body_size`` answers 200
  with that many bytes (and ``content_type``) instead of forwarding; ``reply``
  (``{status, body, headers}``) answers that; ``rewrite`` (``[old, new]``) forwards to
  the path with ``old`` replaced by ``new``; ``drop_request`` closes the client's
  connection without forwarding; ``cut_request_after`` forwards that many bytes of the
  request body and then breaks both connections; ``trickle`` (``{bytes, every, head}``)
  forwards the answer ``bytes`` at a time with ``every`` seconds between, the status
  line and headers too when ``head`` is true (a registry that never stops and never
  finishes); with ``body_size``, ``gzip`` sends those bytes gzip-compressed with
  ``Content-Encoding: gzip`` (a small body that expands without limit), and
  ``gzip_members`` sends that many empty gzip members after them (bytes that decode to
  nothing, endlessly when -1), and ``no_length`` sends them without a Content-Length;
  ``rate`` forwards the answer's body at most that many bytes a second (a link that
  throttles each connection).
- ``GET /__log__``: every request seen (method, path, status, body bytes sent, whether
  it carried an Authorization header).
- ``POST /__referrers__`` with ``{"enabled": true, "page_size": N, "filter": true}`` turns
  on the referrers API (:class:`ReferrersAPI`): no registry packaged here has one
  (distribution 2.8 answers 404), so the proxy plays a registry that does.

``--upstream-auth USER:PASS`` makes it authenticate to the upstream itself, to play blob
storage that a registry redirects to.
"""

import argparse
import base64
import hashlib
import http.client
import json
import re
import socketserver
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host"}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules: list[dict] = []
        self.log: list[dict] = []

    def take_rule(self, key: str, range_header: str | None = None) -> dict | None:
        with self.lock:
            for rule in self.rules:
                if "range" in rule and rule["range"] not in (range_header or ""):
                    continue
                if rule.get("match", "") in key and rule.get("times", 1) != 0:
                    if rule.get("times", 1) > 0:
                        rule["times"] = rule.get("times", 1) - 1
                    return dict(rule)
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.handle_any()

    def do_HEAD(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_PUT(self):
        self.handle_any()

    def do_PATCH(self):
        self.handle_any()

    def do_DELETE(self):
        self.handle_any()

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reply_gzip(self, rule: dict, entry: dict, content_type: str):
        """``body_size`` bytes gzip-compressed, then ``gzip_members`` empty gzip members;
        no Content-Length (the connection closes at the end), so -1 never ends."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        remaining = rule["body_size"]
        block = b" " * (1 << 20)
        while remaining:
            n = min(remaining, len(block))
            self._send_counted(entry, compressor.compress(block[:n]))
            remaining -= n
        self._send_counted(entry, compressor.flush())
        empty = zlib.compressobj(9, zlib.DEFLATED, 31)
        member = empty.compress(b"") + empty.flush()
        members = rule.get("gzip_members", 0)
        while members != 0:
            batch = 256 if members < 0 else min(256, members)
            self._send_counted(entry, member * batch)
            if members > 0:
                members -= batch

    def _reply_unsized(self, rule: dict, entry: dict, content_type: str):
        """``body_size`` bytes with no Content-Length: the end is the connection's."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        remaining = rule["body_size"]
        block = b" " * 65536
        while remaining and self.command != "HEAD":
            n = min(remaining, len(block))
            self._send_counted(entry, block[:n])
            remaining -= n

    def flush_headers(self):
        trickle = getattr(self, "_trickle_head", None)
        if not trickle or not getattr(self, "_headers_buffer", None):
            return super().flush_headers()
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self._trickle_write(head, trickle)

    def _trickle_write(self, data: bytes, trickle: dict, entry: dict | None = None):
        step = max(1, trickle.get("bytes", 1))
        for start in range(0, len(data), step):
            self.wfile.write(data[start:start + step])
            self.wfile.flush()
            if entry is not None:
                entry["sent"] += len(data[start:start + step])
            time.sleep(trickle.get("every", 1))

    def _send_counted(self, entry: dict, data: bytes):
        if data:
            self.wfile.write(data)
            entry["sent"] += len(data)

    def handle_any(self):
        state: State = self.server.state
        self._trickle_head = None
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/__faults__" and self.command == "POST":
            with state.lock:
                state.rules = json.loads(body)
            return self._reply(200, b"{}")
        if self.path == "/__log__":
            with state.lock:
                data = json.dumps(state.log).encode()
            return self._reply(200, data, {"Content-Type": "application/json"})
        if self.path == "/__referrers__" and self.command == "POST":
            self.server.referrers.configure(json.loads(body))
            return self._reply(200, b"{}")
        entry = {"method": self.command, "path": self.path, "status": None, "sent": 0,
                 "authorization": "Authorization" in self.headers,
                 "range": self.headers.get("Range")}
        with state.lock:
            state.log.append(entry)
        rule = state.take_rule(f"{self.command} {self.path}", self.headers.get("Range")) or {}
        if "status" in rule:
            entry["status"] = rule["status"]
            headers = {"Content-Type": "application/json"}
            if "retry_after" in rule:
                headers["Retry-After"] = str(rule["retry_after"])
            if "www_authenticate" in rule:
                headers["WWW-Authenticate"] = rule["www_authenticate"]
            return self._reply(rule["status"], b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}', headers)
        if "reply" in rule:
            reply = rule["reply"]
            entry["status"] = reply.get("status", 200)
            return self._reply(entry["status"], reply.get("body", "").encode(), reply.get("headers", {}))
        if "rewrite" in rule:
            old, new = rule["rewrite"]
            self.path = self.path.replace(old, new)
        if "body_size" in rule:
            entry["status"] = 200
            content_type = rule.get("content_type", "application/octet-stream")
            try:
                if rule.get("gzip") or "gzip_members" in rule:
                    return self._reply_gzip(rule, entry, content_type)
                if rule.get("no_length"):
                    return self._reply_unsized(rule, entry, content_type)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up, as it should
            return self._reply(200, b" " * rule["body_size"], {"Content-Type": content_type})
        if "redirect" in rule:
            entry["status"] = 307
            return self._reply(307, b"", {"Location": rule["redirect"].rstrip("/") + self.path})
        answer = self.server.referrers.answer(self.command, self.path)
        if answer is not None:
            entry["status"] = answer[0]
            return self._reply(*answer)
        try:
            self.forward(rule, entry, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (or was killed)

    def forward(self, rule: dict, entry: dict, body: bytes):
        upstream = self.server.upstream
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = upstream.netloc
        if rule.get("ignore_range"):
            headers.pop("Range", None)
        if "drop_request" in rule:  # the client's connection breaks before anything is forwarded
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if "cut_request_after" in rule:  # the registry gets part of the body, then a broken connection
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.endheaders()
            conn.send(body[: rule["cut_request_after"]])
            conn.sock.shutdown(2)
            conn.close()
            entry["status"] = "cut"
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if self.server.upstream_auth:
            headers["Authorization"] = "Basic " + base64.b64encode(self.server.upstream_auth.encode()).decode()
        conn.request(self.command, self.path, body=body or None, headers=headers)
        response = conn.getresponse()
        entry["status"] = response.status
        trickle = rule.get("trickle")
        self._trickle_head = trickle if trickle and trickle.get("head") else None
        self.send_response(response.status)
        passed = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        passed += self.server.referrers.pushed(self.command, self.path, self.headers, body, response)
        for key, value in passed:
            if key.lower() == "location" and value.startswith(f"http://{upstream.netloc}"):
                value = value.replace(f"http://{upstream.netloc}", f"http://{self.headers.get('Host')}", 1)
            self.send_header(key, value)
        if not any(k.lower() == "content-length" for k, _ in passed) and self.command != "HEAD":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            conn.close()
            return
        sent = 0
        cut = rule.get("cut_after")
        flip = rule.get("flip_byte")
        rate = rule.get("rate")
        started = time.monotonic()
        while True:
            if rate:  # hold this connection to ``rate`` bytes a second
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            chunk = response.read(16384 if rate else 65536)
            if not chunk:
                break
            if flip is not None and sent <= flip < sent + len(chunk):
                chunk = bytearray(chunk)
                chunk[flip - sent] ^= 0xFF
                chunk = bytes(chunk)
            if cut is not None and sent + len(chunk) >= cut:
                self.wfile.write(chunk[: cut - sent])
                self.wfile.flush()
                sent = cut
                entry["sent"] = sent
                self.close_connection = True
                conn.close()
                return
            if trickle:
                self._trickle_write(chunk, trickle, entry)
                sent = entry["sent"]
                continue
            self.wfile.write(chunk)
            sent += len(chunk)
            entry["sent"] = sent
            if rule.get("delay"):
                self.wfile.flush()
                time.sleep(rule["delay"])
        conn.close()


class ReferrersAPI:
    """The distribution-spec 1.1 referrers API, answered by the proxy around the real
    registry behind it (a spec-following endpoint for tests: no packaged registry has the
    API; Debian's distribution 2.8 answers 404 to it).

    Every manifest with a ``subject`` PUT through the proxy is forwarded to the registry
    and, when the registry stored it, recorded and acknowledged with ``OCI-Subject``.
    ``GET /v2/<name>/referrers/<digest>`` answers an OCI index of those that name
    ``<digest>`` (an empty one for any other digest, never 404), each descriptor with its
    ``artifactType`` (else the config's media type) and annotations. Pages hold
    ``page_size`` descriptors (or ``n`` from the query) and link the next with ``Link``;
    ``?artifactType=`` filters and says so with ``OCI-Filters-Applied: artifactType``
    unless ``filter`` is off (then the client must filter).
    """

    PATH = re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/?]+)")
    MANIFEST = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/?]+)")

    def __init__(self):
        self.lock = threading.Lock()
        self.enabled = False
        self.page_size = 100
        self.filter = True
        self.recorded: dict[tuple[str, str], list[dict]] = {}

    def configure(self, settings: dict) -> None:
        with self.lock:
            self.enabled = settings.get("enabled", True)
            self.page_size = settings.get("page_size", 100)
            self.filter = settings.get("filter", True)

    def answer(self, method: str, path: str):
        """(status, body, headers) for a referrers request, else ``None`` (forwarded)."""
        split = urlsplit(path)
        match = self.PATH.fullmatch(split.path)
        if not self.enabled or method not in ("GET", "HEAD") or not match:
            return None
        digest = match["digest"]
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            return 400, b'{"errors":[{"code":"DIGEST_INVALID","message":"invalid digest"}]}', \
                {"Content-Type": "application/json"}
        query = parse_qs(split.query)
        wanted = query.get("artifactType", [None])[0]
        size = int(query.get("n", [self.page_size])[0])
        start = int(query.get("page", ["0"])[0])
        with self.lock:
            found = list(self.recorded.get((match["name"], digest), []))
        headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
        if wanted and self.filter:
            found = [d for d in found if d.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        page = found[start:start + size]
        if start + size < len(found):
            following = {"n": size, "page": start + size, **({"artifactType": wanted} if wanted else {})}
            headers["Link"] = f'<{split.path}?{urlencode(following)}>; rel="next"'
        body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": page}).encode()
        return 200, body, headers

    def pushed(self, method: str, path: str, headers, body: bytes, response) -> list[tuple[str, str]]:
        """Record a manifest with a ``subject`` the registry accepted; the headers to add."""
        match = self.MANIFEST.fullmatch(urlsplit(path).path)
        if not self.enabled or method != "PUT" or not match or response.status != 201:
            return []
        try:
            manifest = json.loads(body)
            subject = manifest["subject"]["digest"]
        except (ValueError, KeyError, TypeError):
            return []
        config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
        descriptor = {
            "mediaType": manifest.get("mediaType") or headers.get("Content-Type"),
            "digest": response.getheader("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
        artifact_type = manifest.get("artifactType") or config.get("mediaType")
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if manifest.get("annotations"):
            descriptor["annotations"] = manifest["annotations"]
        with self.lock:
            listed = self.recorded.setdefault((match["name"], subject), [])
            if all(d["digest"] != descriptor["digest"] for d in listed):
                listed.append(descriptor)
        return [("OCI-Subject", subject)]


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--upstream-auth", default=None)
    args = parser.parse_args()
    server = Server((args.host, args.port), Handler)
    server.state = State()
    server.upstream = urlsplit(args.upstream)
    server.upstream_auth = args.upstream_auth
    server.referrers = ReferrersAPI()
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
