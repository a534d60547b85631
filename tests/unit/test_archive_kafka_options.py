"""Spark's Kafka source options from ``kafka.security``: the archive job's connection."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from lakecast.config import KafkaSecurity
from lakecast.lake.archive import kafka_client_options


def test_plaintext_needs_only_the_protocol() -> None:
    assert kafka_client_options(KafkaSecurity()) == {"kafka.security.protocol": "PLAINTEXT"}


def test_scram_over_tls_reads_the_password_file_into_the_jaas_line(tmp_path: Path) -> None:
    secret = tmp_path / "archive.password"
    secret.write_text('pa"ss\\word\n')
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="archive",
        sasl_password_file=str(secret),
        ssl_cafile="/etc/kafka/ca.pem",
    )
    assert kafka_client_options(security) == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule "
        'required username="archive" password="pa\\"ss\\\\word";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": "/etc/kafka/ca.pem",
        "kafka.ssl.endpoint.identification.algorithm": "https",
    }


def test_plain_takes_the_plain_login_module_and_no_hostname_check_is_passed_on() -> None:
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="svc",
        sasl_password=SecretStr("s3cret"),
        ssl_check_hostname=False,
    )
    options = kafka_client_options(security)
    assert options["kafka.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
    )
    assert options["kafka.ssl.endpoint.identification.algorithm"] == ""
