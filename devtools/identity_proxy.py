"""A stand-in for the identity proxy in front of the review page, for the demo on one
machine: it listens on loopback and forwards each request to the page with the user and
groups an identity proxy (oauth2-proxy) would add. Never a way in for anyone else: it binds
127.0.0.1 only.

    python -m devtools.identity_proxy --upstream http://127.0.0.1:8080 [--port 8081]
"""

from __future__ import annotations

import argparse
import http.client
import threading
import urllib.parse
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate"}  # fmt: skip


class IdentityProxy:
    """Forwards to `upstream` as `user` in `groups` (started: `url`; `close()`)."""

    def __init__(self, upstream: str, user: str, groups: str, port: int = 0) -> None:
        target = urllib.parse.urlsplit(upstream)
        host, upstream_port = target.hostname or "127.0.0.1", target.port or 80
        headers = {"X-Forwarded-User": user, "X-Forwarded-Groups": groups}

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                sent = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in HOP and not k.lower().startswith("x-forwarded-")
                }
                connection = http.client.HTTPConnection(host, upstream_port, timeout=60)
                try:
                    connection.request(self.command, self.path, body, sent | headers)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _forward  # noqa: N815 (http.server's names)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.identity_proxy",
                                     description=__doc__)  # fmt: skip
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--user", default="demo")
    parser.add_argument("--groups", default="anomaly-judges")
    args = parser.parse_args(argv)
    proxy = IdentityProxy(args.upstream, args.user, args.groups, args.port)
    print(f"identity proxy at {proxy.url} -> {args.upstream} as {args.user} ({args.groups})")
    threading.Event().wait()


if __name__ == "__main__":
    main()
