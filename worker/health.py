"""One HTTP port for Prometheus and Kubernetes: /metrics, /livez and /readyz."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Health:
    """What the probes read: the loop's heartbeat and whether the worker can serve."""

    def __init__(self, liveness_timeout_s: float, clock: Callable[[], float] = time.monotonic):
        self.liveness_timeout_s = liveness_timeout_s
        self.clock = clock
        self.last_beat = clock()
        self.model_loaded = False
        self.store_unavailable: str | None = None  # why the model store cannot be read
        self.partitions_assigned = False
        self.topics_missing: tuple[str, ...] = ()  # found missing by the check at start
        # the brokers: the consumer's own view (set once it exists), and why a publish or
        # commit is being tried again (None: it is not)
        self.brokers_reachable: Callable[[], bool] = lambda: True
        self.retrying: str | None = None

    def beat(self) -> None:
        """The loop is alive: called once per iteration."""
        self.last_beat = self.clock()

    @property
    def live(self) -> bool:
        return self.clock() - self.last_beat <= self.liveness_timeout_s

    def not_ready(self) -> list[str]:
        """Why the worker cannot serve now (empty: it is ready), as /readyz says it."""
        reasons = []
        if not self.model_loaded:
            reasons.append("no model" + (": model store cannot be read" if self.store_unavailable
                                         else ""))  # fmt: skip
        if self.topics_missing:
            reasons.append(f"topics missing: {', '.join(self.topics_missing)}")
        if self.retrying is not None:
            reasons.append(self.retrying)
        elif not self.brokers_reachable():
            reasons.append("no brokers")
        if not self.partitions_assigned:
            reasons.append("no partitions")
        return reasons

    @property
    def ready(self) -> bool:
        return not self.not_ready()


class HealthServer:
    """Serves the registry and the probes from a daemon thread; port 0 picks a free port."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health) -> None:
        handler = _handler(registry, health)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="health-http", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/livez":
                ok = health.live
                self._send(200 if ok else 503, b"ok\n" if ok else b"loop stalled\n")
            elif path == "/readyz":
                reasons = health.not_ready()
                if reasons:
                    self._send(503, f"not ready: {'; '.join(reasons)}\n".encode())
                else:
                    self._send(200, b"ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would flood the log; stay quiet."""

    return Handler
