"""Certificates for the brokers and clients of the TLS tests, made with openssl: a CA, the
broker's key and certificate (a PKCS#12 keystore, for Kafka), and a client's certificate and
key, the key encrypted with a password (mutual TLS: the broker takes the client's principal
from its certificate)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

STORE_PASSWORD = "changeit"  # the broker's keystore (a test's own, thrown away with it)


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA's certificate (PEM): the clients' and the broker's trust
    keystore: Path  # the broker's key and certificate, PKCS#12, password STORE_PASSWORD
    client_cert: Path  # a client's certificate (PEM), subject CN=<client name>
    client_key: Path  # its key (PEM), encrypted with `key_password`
    key_password: str
    principal: str  # the principal Kafka makes of the client's certificate


def make_pki(directory: Path, client: str = "worker", key_password: str = "k3y-pass") -> Pki:
    """A CA, a broker certificate for 127.0.0.1 (clients check the address) and a client
    certificate for CN=`client`, all signed by the CA, valid for two days, under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    f = {name: directory / name for name in (
        "ca.pem", "ca.key", "broker.key", "broker.csr", "broker.pem", "broker.p12", "san.cnf",
        "client.key", "client.csr", "client.pem",
    )}  # fmt: skip
    f["san.cnf"].write_text("subjectAltName=IP:127.0.0.1\n")
    sign = ["-CA", str(f["ca.pem"]), "-CAkey", str(f["ca.key"]), "-CAcreateserial", "-days", "2"]
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f["ca.key"],
         "-out", f["ca.pem"], "-days", "2", "-subj", "/CN=test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", f["broker.key"],
         "-out", f["broker.csr"], "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", f["broker.csr"], *sign, "-out", f["broker.pem"],
         "-extfile", f["san.cnf"]],
        ["pkcs12", "-export", "-in", f["broker.pem"], "-inkey", f["broker.key"],
         "-certfile", f["ca.pem"], "-name", "broker", "-out", f["broker.p12"],
         "-passout", f"pass:{STORE_PASSWORD}"],
        ["req", "-newkey", "rsa:2048", "-keyout", f["client.key"], "-out", f["client.csr"],
         "-subj", f"/CN={client}", "-passout", f"pass:{key_password}"],
        ["x509", "-req", "-in", f["client.csr"], *sign, "-out", f["client.pem"]],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True,
                       timeout=60)  # fmt: skip
    return Pki(f["ca.pem"], f["broker.p12"], f["client.pem"], f["client.key"], key_password,
               f"User:CN={client}")  # fmt: skip


def client_auth_required(pki: Pki) -> dict[str, str]:
    """Broker settings (start_kafka4's `overrides`) for the keystore in `pki`: its TLS listener
    demands a client certificate signed by the CA (mutual TLS); its SASL_SSL listener does
    not; a resource with no ACL is open to every principal, one with ACLs only to theirs."""
    return {
        "ssl.keystore.type": "PKCS12",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
        "listener.name.ssl.ssl.client.auth": "required",
        "allow.everyone.if.no.acl.found": "true",
    }
