"""Resolve the pinned JVM artifacts of ``jvm/pom.xml`` into a local cache, once.

Each Maven profile of the pom (``spark``, ``kafka``) is copied with its runtime dependencies into
``<jars_dir>/<profile>/``. A stamp holding the pom's sha256 makes the step idempotent and lets
every later run work offline: Maven is only called when the pom changed or the folder is gone.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lakecast.config import PROJECT_ROOT, Settings
from lakecast.errors import EnvironmentSetupError

POM = PROJECT_ROOT / "jvm" / "pom.xml"
PROFILES = ("spark", "kafka")
_STAMP = ".pom.sha256"
_VERSION_SUFFIX = re.compile(r"-\d[\w.\-]*\.jar$")
# Families pyspark already ships at a newer version, under other artifact names.
_SHIPPED_FAMILIES = ("jackson-", "commons-logging")


@dataclass(frozen=True)
class ResolvedJars:
    """Where the resolved jars are, per profile."""

    root: Path
    spark: tuple[Path, ...]
    kafka: tuple[Path, ...]

    @property
    def kafka_classpath(self) -> str:
        return ":".join(str(jar) for jar in self.kafka)

    @property
    def spark_jars(self) -> str:
        """Comma-separated, as ``spark.jars`` and ``--jars`` take them."""
        return ",".join(str(jar) for jar in self.spark)


def require_tool(name: str, install_hint: str) -> str:
    """The path of an executable on PATH, or a one-sentence error saying what to install."""
    path = shutil.which(name)
    if path is None:
        msg = f"`{name}` was not found on PATH: install {install_hint}"
        raise EnvironmentSetupError(msg)
    return path


def _artifact(jar: Path | str) -> str:
    return _VERSION_SUFFIX.sub("", Path(jar).name)


def _pyspark_artifacts() -> set[str]:
    import pyspark  # the jars folder of the installed pyspark, not a Spark import

    jars = Path(pyspark.__file__).parent / "jars"
    return {_artifact(jar) for jar in jars.glob("*.jar")}


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _is_current(folder: Path, digest: str) -> bool:
    stamp = folder / _STAMP
    return stamp.is_file() and stamp.read_text().strip() == digest and any(folder.glob("*.jar"))


def _resolve_profile(profile: str, folder: Path, digest: str) -> None:
    mvn = require_tool(
        "mvn", "Apache Maven (Debian: `apt-get install -y maven`) or run `make setup`"
    )
    require_tool("java", "a Java 17 JDK (Debian: `apt-get install -y openjdk-17-jdk-headless`)")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn, "-q", "-B", "-f", str(POM), "-P", profile,
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        msg = f"mvn could not resolve the {profile!r} profile of {POM}:\n{tail}"
        raise EnvironmentSetupError(msg)
    if profile == "spark":
        # pyspark ships its own Spark, Hadoop, Jackson and Scala: a second copy would clash.
        shipped = _pyspark_artifacts()
        for jar in staging.glob("*.jar"):
            if _artifact(jar) in shipped or jar.name.startswith(_SHIPPED_FAMILIES):
                jar.unlink()
    (staging / _STAMP).write_text(digest)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def resolve_jars(settings: Settings, *, offline_only: bool = False) -> ResolvedJars:
    """Resolve every profile (only where the cache is stale) and return the jar lists.

    Raises:
        EnvironmentSetupError: java or mvn is missing, Maven failed, or ``offline_only`` is set
            and the cache is not complete.
    """
    root = settings.project_path(settings.local.jars_dir)
    digest = _pom_digest()
    found: dict[str, tuple[Path, ...]] = {}
    for profile in PROFILES:
        folder = root / profile
        if not _is_current(folder, digest):
            if offline_only:
                msg = f"the {profile} jars are not resolved under {folder}: run `lakecast jars`"
                raise EnvironmentSetupError(msg)
            _resolve_profile(profile, folder, digest)
        found[profile] = tuple(sorted(folder.glob("*.jar")))
    return ResolvedJars(root=root, spark=found["spark"], kafka=found["kafka"])
