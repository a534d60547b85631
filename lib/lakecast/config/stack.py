"""Where the data lives and what runs the jobs: the lake, Spark and the local stack."""

from __future__ import annotations

from pydantic import Field, model_validator

from lakecast.config.base import _Section


class LakeSettings(_Section):
    """Where the Delta tables live: a local folder or any Hadoop filesystem URI."""

    root: str = "lake"

    def table(self, name: str) -> str:
        """The URI of a table under the lake root."""
        return f"{self.root.rstrip('/')}/{name}"


class SparkSettings(_Section):
    master: str = "local[*]"
    app_name: str = "lakecast"
    defaults_file: str = "conf/spark-defaults.conf"
    shuffle_partitions: int = Field(default=8, ge=1)


class LocalStackSettings(_Section):
    """Ports and folders of the embedded stack that ``lakecast local up`` starts."""

    state_dir: str = ".state"
    jars_dir: str = ".jars"
    host: str = "127.0.0.1"
    broker_port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    spark_master_port: int = Field(default=7077, ge=1, le=65535)
    spark_master_ui_port: int = Field(default=8080, ge=1, le=65535)
    broker_start_timeout_s: float = Field(default=90.0, gt=0)
    broker_heap: str = "512m"

    @model_validator(mode="after")
    def _distinct_ports(self) -> LocalStackSettings:
        ports = [self.broker_port, self.controller_port, self.spark_master_port]
        if len(set(ports)) != len(ports):
            msg = f"broker_port, controller_port and spark_master_port must differ, got {ports}"
            raise ValueError(msg)
        return self
