"""Write ``dist/lakecast-<version>-py-files.zip``: the ``lakecast`` package for spark-submit's
``--py-files`` (executors on a cluster import it from there), versioned as the package is.

    python deploy/pyfiles_zip.py [--out dist]

The zip holds ``lakecast/...`` as it is in lib/ (sources and package data, no caches), the
layout ``spark-submit.sh`` zips for each submit; the version is pyproject.toml's.
"""

from __future__ import annotations

import argparse
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {"__pycache__"}


def package_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def write_zip(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"lakecast-{package_version()}-py-files.zip"
    partial = target.with_suffix(".zip.partial")
    source = ROOT / "lib"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((source / "lakecast").rglob("*")):
            if path.is_dir() or SKIPPED & set(path.parts) or path.suffix == ".pyc":
                continue
            archive.write(path, path.relative_to(source).as_posix())
    partial.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="output folder")
    print(write_zip(Path(parser.parse_args().out)))


if __name__ == "__main__":
    main()
