"""Resolve the pinned JVM artifacts of ``jvm/pom.xml`` into a local cache, once, and verify them.

Each Maven profile of the pom (``spark``, ``kafka``) is copied with its runtime dependencies into
``<jars_dir>/<profile>/``. Maven runs with ``--strict-checksums``: a download whose checksum does
not match the repository's fails the step. A stamp (``.resolved.json``) records the pom's sha256
and each jar's sha256; it makes the step idempotent and lets every later run work offline (Maven
is only called when the pom changed or the folder is gone), and every use checks the folder
against it: a jar modified, missing, or dropped in without being resolved is refused by name.

A folder stamped before jars' sha256s were recorded (``.pom.sha256``) is resolved once more; if
Maven gives the same jars, byte for byte, the folder stays and only its stamp is replaced.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lakecast.config import PROJECT_ROOT, Settings
from lakecast.errors import EnvironmentSetupError

POM = PROJECT_ROOT / "jvm" / "pom.xml"
PROFILES = ("spark", "kafka")
_STAMP = ".resolved.json"
_LEGACY_STAMP = ".pom.sha256"  # the pom's digest only, before jars were recorded
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Per process: a jar is hashed again only when its inode, size or mtime changed.
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _jar_sha256(path: Path) -> str:
    status = path.stat()
    key = (str(path), status.st_ino, status.st_size, status.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def _read_stamp(folder: Path) -> dict[str, object] | None:
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _write_stamp(folder: Path, digest: str, jars: dict[str, str]) -> None:
    payload = json.dumps({"pom_sha256": digest, "jars": jars}, indent=1, sort_keys=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".stamp-")
    with os.fdopen(descriptor, "w") as out:
        out.write(payload + "\n")
    Path(temporary).chmod(0o644)
    os.replace(temporary, folder / _STAMP)


def _digests(folder: Path) -> dict[str, str]:
    return {jar.name: _jar_sha256(jar) for jar in sorted(folder.glob("*.jar"))}


def verify_folder(profile: str, folder: Path, recorded: dict[str, str]) -> None:
    """Check every jar of ``folder`` against the sha256s its stamp recorded.

    Raises:
        EnvironmentSetupError: naming each jar that was modified, is missing, or was never
            resolved (dropped into the folder by hand).
    """
    present = {jar.name: jar for jar in folder.glob("*.jar")}
    problems = [f"{folder / name}: missing" for name in sorted(recorded) if name not in present] + [
        f"{present[name]}: not resolved from {POM.name} (dropped in by hand?)"
        for name in sorted(present)
        if name not in recorded
    ]
    for name in sorted(set(recorded) & set(present)):
        actual = _jar_sha256(present[name])
        if actual != recorded[name]:
            problems.append(
                f"{present[name]}: sha256 {actual} does not match {recorded[name]} recorded "
                "when it was resolved"
            )
    if problems:
        msg = (
            f"the {profile} jars under {folder} are not the ones Maven resolved; refusing them:\n  "
            + "\n  ".join(problems)
            + f"\nremove {folder} and run `lakecast jars` to resolve them again"
        )
        raise EnvironmentSetupError(msg)


@contextmanager
def _resolving(root: Path) -> Iterator[None]:
    """One resolver at a time per jars folder (tests and CLIs start in parallel)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _resolve_profile(profile: str, folder: Path, digest: str) -> None:
    """Resolve ``profile`` into a fresh folder and put it in place of ``folder``.

    A folder that holds the very same jars (a legacy stamp being migrated) stays where it is,
    so that JVMs reading it meanwhile never see it vanish; only its stamp is replaced.
    """
    mvn = require_tool(
        "mvn", "Apache Maven (Debian: `apt-get install -y maven`) or run `make setup`"
    )
    require_tool("java", "a Java 17 JDK (Debian: `apt-get install -y openjdk-17-jdk-headless`)")
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{profile}.partial-"))
    try:
        command = [
            mvn, "-q", "-B", "--strict-checksums", "-f", str(POM), "-P", profile,
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
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
        resolved = _digests(staging)
        if folder.is_dir() and _digests(folder) == resolved:
            _write_stamp(folder, digest, resolved)
            (folder / _LEGACY_STAMP).unlink(missing_ok=True)
            return
        _write_stamp(staging, digest, resolved)
        staging.chmod(0o755)  # mkdtemp made it 0700; the jars are not secret
        retired = folder.with_name(f".{profile}.retired-{os.getpid()}")
        if folder.exists():
            folder.rename(retired)
        staging.rename(folder)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _current_jars(folder: Path, digest: str) -> dict[str, str] | None:
    """The recorded sha256s when ``folder`` is resolved from this pom; None when stale."""
    stamp = _read_stamp(folder)
    if stamp is None or stamp.get("pom_sha256") != digest:
        return None
    jars = stamp.get("jars")
    if not isinstance(jars, dict) or not jars:
        return None
    return {str(name): str(sha) for name, sha in jars.items()}


def resolve_jars(settings: Settings, *, offline_only: bool = False) -> ResolvedJars:
    """Resolve every profile (only where the cache is stale), verify it, return the jar lists.

    Raises:
        EnvironmentSetupError: java or mvn is missing, Maven failed, ``offline_only`` is set
            and the cache is not complete, or a jar does not match the sha256 recorded when it
            was resolved (modified, missing, or never resolved).
    """
    root = settings.project_path(settings.local.jars_dir)
    digest = _pom_digest()
    found: dict[str, tuple[Path, ...]] = {}
    for profile in PROFILES:
        folder = root / profile
        recorded = _current_jars(folder, digest)
        if recorded is None:
            if offline_only:
                msg = f"the {profile} jars are not resolved under {folder}: run `lakecast jars`"
                raise EnvironmentSetupError(msg)
            with _resolving(root):
                recorded = _current_jars(folder, digest)  # another process may have done it
                if recorded is None:
                    _resolve_profile(profile, folder, digest)
                    recorded = _current_jars(folder, digest) or {}
        verify_folder(profile, folder, recorded)
        found[profile] = tuple(folder / name for name in sorted(recorded))
    return ResolvedJars(root=root, spark=found["spark"], kafka=found["kafka"])
