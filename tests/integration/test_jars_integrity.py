"""`lakecast jars` on a private copy of the resolved jars: a legacy stamp is migrated by
resolving once (the folder stays in place), then a modified, missing or dropped-in jar is
refused by name. The real .jars folder is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lakecast.config import load_settings, settings
from lakecast.local.jars import POM, PROFILES, file_sha256, resolve_jars

LAKECAST = Path(sys.executable).with_name("lakecast")


@pytest.fixture(scope="module")
def jars_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the resolved jars as an older lakecast left them: the pom's digest only."""
    current = settings()
    real = current.project_path(current.local.jars_dir)  # read only, never resolved here
    root = tmp_path_factory.mktemp("jars")
    pom_digest = file_sha256(POM)
    for profile in PROFILES:
        folder = root / profile
        folder.mkdir()
        for jar in (real / profile).glob("*.jar"):
            shutil.copy2(jar, folder / jar.name)
        (folder / ".pom.sha256").write_text(pom_digest)
    return root


@pytest.fixture(scope="module")
def config(jars_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conf") / "lakecast.yaml"
    path.write_text(yaml.safe_dump({"local": {"jars_dir": str(jars_copy)}}))
    return path


def _jars_cli(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKECAST__")}
    env["LAKECAST_CONFIG"] = str(config)
    return subprocess.run(
        [str(LAKECAST), "jars"], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_a_legacy_stamp_is_migrated_by_resolving_once_in_place(
    jars_copy: Path, config: Path
) -> None:
    inodes = {profile: (jars_copy / profile).stat().st_ino for profile in PROFILES}
    resolved = resolve_jars(load_settings(config, environ={}))
    for profile in PROFILES:
        folder = jars_copy / profile
        assert folder.stat().st_ino == inodes[profile], "the folder was swapped, not kept"
        assert not (folder / ".pom.sha256").exists()
        stamp = json.loads((folder / ".resolved.json").read_text())
        assert stamp["pom_sha256"] == file_sha256(POM)
        jars = sorted(folder.glob("*.jar"))
        assert sorted(stamp["jars"]) == [jar.name for jar in jars]
        for jar in jars:
            assert stamp["jars"][jar.name] == file_sha256(jar)
    assert len(resolved.spark) == len(list((jars_copy / "spark").glob("*.jar")))


def test_jars_refuses_a_modified_missing_or_dropped_in_jar_by_name(
    jars_copy: Path, config: Path
) -> None:
    ok = _jars_cli(config)
    assert ok.returncode == 0, ok.stderr
    assert "verified:" in ok.stdout

    victim = sorted((jars_copy / "kafka").glob("*.jar"))[0]
    original = victim.read_bytes()
    victim.write_bytes(original + b"\0")  # one byte appended, as a tampered jar would be
    try:
        modified = _jars_cli(config)
        assert modified.returncode == 1
        assert str(victim) in modified.stderr
        assert "does not match" in modified.stderr
        assert "Traceback" not in modified.stderr
    finally:
        victim.write_bytes(original)

    spark_jar = sorted((jars_copy / "spark").glob("*.jar"))[0]
    moved = spark_jar.with_suffix(".jar.away")
    spark_jar.rename(moved)
    try:
        missing = _jars_cli(config)
        assert missing.returncode == 1
        assert f"{spark_jar}: missing" in missing.stderr
    finally:
        moved.rename(spark_jar)

    intruder = jars_copy / "spark" / "zz-agent-1.0.jar"
    intruder.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip, never resolved
    try:
        dropped = _jars_cli(config)
        assert dropped.returncode == 1
        assert f"{intruder}: not resolved" in dropped.stderr
    finally:
        intruder.unlink()

    assert _jars_cli(config).returncode == 0  # restored: accepted again
