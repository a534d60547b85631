"""lakecast: batch and streaming ML deployment on Spark, Delta Lake and Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lakecast")
except PackageNotFoundError:  # running from a source tree shipped as --py-files
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
