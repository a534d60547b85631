"""A secured local broker: SASL/SCRAM-SHA-512 over TLS, one principal per service, ACLs.

``lakecast local up --secure`` and the secured test fixture use it. Everything lives under the
broker's state folder, in ``secure/``, every file 0600:

- ``tls/ca.pem`` (the clients' trust anchor), ``tls/ca.key``, ``tls/broker.pem`` (the broker's
  key and certificate chain, a PEM keystore as Kafka 4 reads it);
- ``secrets/NAME.password``: a random password per principal (:data:`PRINCIPALS`);
- ``NAME.yaml``: a config overlay per service principal (``LAKECAST_CONFIG_OVERLAY``), which
  names the password file, never the password; the autoscaler's also names the worker's
  overlay (``autoscaling.worker_config_overlay``) for the workers its pool starts.

The client listener is SASL_SSL with SCRAM-SHA-512; the SCRAM users are created by Kafka's own
StorageTool when the storage is formatted (its ``--add-scram`` arguments go through a java
``@argfile``, so no password is on a command line). The controller listener takes TLS with a
client certificate (KRaft controllers cannot check SCRAM: the credentials live in the metadata
they serve), so only a holder of the broker's key reaches it. The StandardAuthorizer refuses
what no ACL allows; super users are the broker's and the admin's principals only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from lakecast.config import KafkaSecurity, KafkaSettings
from lakecast.errors import LocalStackError
from lakecast.local.state import private_dir, write_private

MECHANISM: Final = "SCRAM-SHA-512"
BROKER_USER = "broker"  # inter-broker traffic on the SASL_SSL listener
ADMIN_USER = "admin"  # creates topics and ACLs
SERVICE_USERS = ("worker", "replay", "monitor", "autoscaler", "archive")
PRINCIPALS = (BROKER_USER, ADMIN_USER, *SERVICE_USERS)
# The subject of the broker's certificate, and so its principal on the controller listener.
BROKER_CERT_CN = "lakecast-broker"
# Consumer groups of the services whose group is not a config setting: the defaults of
# `lakecast stream monitor` / `autoscaler` and of Spark's Kafka source (groupIdPrefix).
MONITOR_GROUP = "lakecast-monitor"
AUTOSCALER_GROUP = "lakecast-autoscaler"
SPARK_GROUP_PREFIX = "spark-kafka-source"
_CERT_DAYS = 825
_ACL_WAIT_S = 30.0

Operation = Literal["READ", "WRITE", "DESCRIBE", "IDEMPOTENT_WRITE"]
ResourceKind = Literal["topic", "group", "transactional_id", "cluster"]


@dataclass(frozen=True)
class Grant:
    """One ALLOW ACL: ``principal`` may do ``operation`` on a resource (or a name prefix)."""

    principal: str
    operation: Operation
    resource: ResourceKind
    name: str
    prefixed: bool = False

    def __str__(self) -> str:
        pattern = "prefix " if self.prefixed else ""
        return f"User:{self.principal} {self.operation} {self.resource} {pattern}{self.name!r}"


def service_grants(kafka: KafkaSettings, worker_group: str) -> list[Grant]:
    """The ACLs of the lakecast services: each may do what its role needs, nothing more.

    ``metrics`` is written by the three principals whose records the system acts on: workers
    (kind=sample), the monitor (kind=anomaly), the autoscaler (kind=scaling); replay and the
    archive cannot write it. Kafka's ACLs are per topic, not per record kind, so which of
    those three wrote a record is not in the record: see the README's "Secured Kafka".
    """
    topics = kafka.topics
    grants = [
        Grant("worker", "READ", "topic", topics.events),
        Grant("worker", "READ", "group", worker_group, prefixed=True),
        *(Grant("worker", "WRITE", "topic", t) for t in (topics.predictions, topics.dlq)),
        Grant("worker", "WRITE", "topic", topics.metrics),
        Grant("worker", "WRITE", "topic", topics.served_features),
        # transactional_id_for(group) names a worker's producer "<group>-<random>".
        Grant("worker", "WRITE", "transactional_id", worker_group, prefixed=True),
        Grant("worker", "DESCRIBE", "transactional_id", worker_group, prefixed=True),
        Grant("worker", "IDEMPOTENT_WRITE", "cluster", "kafka-cluster"),
        Grant("replay", "WRITE", "topic", topics.events),
        Grant("monitor", "READ", "topic", topics.metrics),
        Grant("monitor", "READ", "group", MONITOR_GROUP, prefixed=True),
        Grant("monitor", "WRITE", "topic", topics.metrics),
        Grant("autoscaler", "READ", "topic", topics.metrics),
        Grant("autoscaler", "READ", "group", AUTOSCALER_GROUP, prefixed=True),
        Grant("autoscaler", "WRITE", "topic", topics.metrics),
        # The lag probe: the workers' committed offsets and the events topic's end offsets.
        Grant("autoscaler", "DESCRIBE", "group", worker_group, prefixed=True),
        Grant("autoscaler", "DESCRIBE", "topic", topics.events),
        Grant("archive", "READ", "topic", topics.predictions),
        Grant("archive", "READ", "topic", topics.metrics),
        Grant("archive", "READ", "topic", topics.served_features),
        Grant("archive", "READ", "group", SPARK_GROUP_PREFIX, prefixed=True),
    ]
    return grants


def apply_grants(admin: Any, grants: Iterable[Grant]) -> None:
    """Create the ACLs (idempotent: an existing binding is created again as a no-op).

    Raises:
        LocalStackError: the broker refused one (the message names it).
    """
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )

    kinds = {
        "topic": ResourceType.TOPIC,
        "group": ResourceType.GROUP,
        "transactional_id": ResourceType.TRANSACTIONAL_ID,
        "cluster": ResourceType.CLUSTER,
    }
    wanted = list(grants)
    prefixed, literal = ACLResourcePatternType.PREFIXED, ACLResourcePatternType.LITERAL
    acls = [
        ACL(
            principal=f"User:{grant.principal}",
            host="*",
            operation=ACLOperation[grant.operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                kinds[grant.resource],
                grant.name,
                prefixed if grant.prefixed else literal,
            ),
        )
        for grant in wanted
    ]
    result = admin.create_acls(acls)
    failed = result.get("failed", []) if isinstance(result, dict) else []
    if failed:
        problems = "; ".join(
            f"{acl.principal} {acl.operation.name}: {err!r}" for acl, err in failed
        )
        msg = f"create ACLs on the local broker: {problems}"
        raise LocalStackError(msg)
    # The broker's authorizer applies new ACLs from the metadata log a moment after the
    # controller committed them; a client in that moment was refused (the replay principal,
    # 2 runs in 4). DescribeAcls is answered from that authorizer.
    everything = ACLFilter(
        principal=None,
        host=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )
    deadline = time.monotonic() + _ACL_WAIT_S
    while True:
        found, error = admin.describe_acls(everything)
        if error.errno == 0 and len(found) >= len(acls):
            return
        if time.monotonic() > deadline:
            msg = f"the local broker shows {len(found)} of {len(acls)} ACLs after {_ACL_WAIT_S} s"
            raise LocalStackError(msg)
        time.sleep(0.1)


class SecureBrokerFiles:
    """The TLS material, passwords and overlays of one secured broker (under ``root``)."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1") -> None:
        self.root = Path(root).resolve()
        self.host = host

    @property
    def ca_file(self) -> Path:
        return self.root / "tls" / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "tls" / "ca.key"

    @property
    def keystore(self) -> Path:
        return self.root / "tls" / "broker.pem"

    def password_file(self, user: str) -> Path:
        return self.root / "secrets" / f"{user}.password"

    def overlay(self, user: str) -> Path:
        return self.root / f"{user}.yaml"

    def exists(self) -> bool:
        """Whether the certificates and every principal's password are there."""
        files = [self.ca_file, self.keystore, *(self.password_file(u) for u in PRINCIPALS)]
        return all(file.is_file() for file in files)

    def ensure(self) -> None:
        """Create what is missing: the CA and broker certificate, then the passwords.

        Passwords are made once: the storage's SCRAM credentials were formatted from them.
        """
        private_dir(self.root)
        if not (self.ca_file.is_file() and self.keystore.is_file() and self.ca_key.is_file()):
            self._issue_certificates()
        for user in PRINCIPALS:
            if not self.password_file(user).is_file():
                write_private(self.password_file(user), secrets.token_hex(24) + "\n")

    def password(self, user: str) -> str:
        path = self.password_file(user)
        try:
            return path.read_text().strip()
        except OSError as exc:
            msg = f"the local broker's password file {path} cannot be read ({exc.strerror})"
            raise LocalStackError(msg) from exc

    # -- what the broker needs ----------------------------------------------------------------

    def broker_properties(self, host: str, port: int, controller_port: int) -> dict[str, str]:
        """server.properties entries that replace the template's PLAINTEXT listeners.

        The JAAS line holds the broker's own password: server.properties is written 0600.
        """
        broker_password = self.password(BROKER_USER)
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{broker_password}";'
        )
        return {
            "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{BROKER_USER};User:{ADMIN_USER};User:CN={BROKER_CERT_CN}",
        }

    def format_arguments(self) -> list[str]:
        """StorageTool ``--add-scram`` arguments creating every principal (secrets inside)."""
        arguments: list[str] = []
        for user in PRINCIPALS:
            arguments += [
                "--add-scram",
                f"{MECHANISM}=[name={user},password={self.password(user)}]",
            ]
        return arguments

    # -- what the clients need ----------------------------------------------------------------

    def client_security(self, user: str) -> KafkaSecurity:
        """The ``kafka.security`` block of ``user``: SASL_SSL, SCRAM, its password file."""
        return KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            sasl_username=user,
            sasl_password_file=str(self.password_file(user)),
            ssl_cafile=str(self.ca_file),
        )

    def provision(
        self, bootstrap_servers: str, kafka: KafkaSettings, worker_group: str
    ) -> dict[str, Path]:
        """On the started broker, as the admin: the topics, the ACLs; then the overlays.

        Returns:
            The overlay file of each client principal.
        """
        from lakecast.kafka.clients import build_admin, ensure_topics, standard_topics

        admin_kafka = kafka.model_copy(
            update={
                "bootstrap_servers": bootstrap_servers,
                "security": self.client_security(ADMIN_USER),
            }
        )
        admin = build_admin(admin_kafka, client_id="lakecast-local-admin")
        try:
            ensure_topics(admin, standard_topics(admin_kafka))
            apply_grants(admin, service_grants(admin_kafka, worker_group))
        finally:
            admin.close()
        return self.write_overlays(bootstrap_servers)

    def write_overlays(self, bootstrap_servers: str) -> dict[str, Path]:
        """A config overlay per client principal (admin and the services); returns the paths."""
        written = {}
        for user in (ADMIN_USER, *SERVICE_USERS):
            security = self.client_security(user).model_dump(exclude_defaults=True)
            overlay: dict[str, Any] = {
                "kafka": {"bootstrap_servers": bootstrap_servers, "security": security}
            }
            if user == "autoscaler":  # its pool's workers connect as the worker principal
                overlay["autoscaling"] = {"worker_config_overlay": str(self.overlay("worker"))}
            text = (
                f"# lakecast local up --secure: the {user} principal. Use it with\n"
                f"#   export LAKECAST_CONFIG_OVERLAY={self.overlay(user)}\n"
                + yaml.safe_dump(overlay, sort_keys=False)
            )
            write_private(self.overlay(user), text)
            written[user] = self.overlay(user)
        return written

    # -- certificates -------------------------------------------------------------------------

    def _issue_certificates(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakecast local CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        for host in dict.fromkeys(["127.0.0.1", self.host]):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_CERT_CN)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # serverAuth for its listeners, clientAuth for its own calls to the controller.
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        pkcs8 = serialization.PrivateFormat.PKCS8
        plain = serialization.NoEncryption()
        write_private(self.ca_key, ca_key.private_bytes(pem, pkcs8, plain))
        write_private(self.ca_file, ca_cert.public_bytes(pem))
        write_private(
            self.keystore,
            key.private_bytes(pem, pkcs8, plain)
            + cert.public_bytes(pem)
            + ca_cert.public_bytes(pem),
        )
