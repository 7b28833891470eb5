"""A token server for a registry in ``auth: token`` mode (Docker's token protocol).

Run as a process: ``python tokenserver.py --key key.pem --cert cert.pem --user U:P
--issuer ISS``; it prints its port when listening. ``GET /token?service=S&scope=...``
with the right Basic credentials gets a JWT (RS256, ``x5c`` header with the certificate)
granting the asked actions; without credentials it gets a token granting nothing (as
Docker Hub's anonymous tokens for private repositories); wrong credentials get 401.
``GET /__log__`` lists the requests seen.
"""

import argparse
import base64
import json
import socketserver
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        """OAuth2 refresh-token grant (how Docker uses an identity token)."""
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        with server.lock:
            server.log.append({"scope": form.get("scope", []), "authorization": False, "method": "POST"})
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [server.refresh_token]:
            return self.reply(401, {"error": "invalid_grant"})
        scopes = [s for scope in form.get("scope", []) for s in scope.split(" ") if s]
        self.issue(True, scopes, form.get("service", [""])[0])

    def do_GET(self):
        server = self.server
        url = urlsplit(self.path)
        if url.path == "/__log__":
            with server.lock:
                return self.reply(200, server.log)
        if url.path != "/token":
            return self.reply(404, {"error": "not found"})
        query = parse_qs(url.query)
        auth = self.headers.get("Authorization", "")
        with server.lock:
            server.log.append({"scope": query.get("scope", []), "authorization": bool(auth), "method": "GET"})
        granted = False
        if auth:
            if not auth.startswith("Basic ") or base64.b64decode(auth[6:]).decode() != server.user:
                return self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
            granted = True
        self.issue(granted, query.get("scope", []), query.get("service", [""])[0])

    def issue(self, granted: bool, scopes: list[str], service: str):
        server = self.server
        access = []
        if granted:
            for scope in scopes:
                for one in scope.split(" "):
                    kind, _, rest = one.partition(":")
                    name, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": server.issuer, "sub": server.user.split(":")[0] if granted else "",
                  "aud": service, "exp": now + server.lifetime, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [server.cert_der_b64]}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = server.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input}.{b64url(signature)}"
        self.reply(200, {"token": token, "access_token": token, "expires_in": server.lifetime,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--user", required=True, help="USER:PASSWORD")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--lifetime", type=int, default=300)
    parser.add_argument("--refresh-token", default="contentstore-test-refresh-token")
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.key = serialization.load_pem_private_key(open(args.key, "rb").read(), password=None)
    cert = x509.load_pem_x509_certificate(open(args.cert, "rb").read())
    server.cert_der_b64 = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    server.user = args.user
    server.issuer = args.issuer
    server.lifetime = args.lifetime
    server.refresh_token = args.refresh_token
    server.lock = threading.Lock()
    server.log = []
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
