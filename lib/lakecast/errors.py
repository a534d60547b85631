"""The one error family of lakecast.

Every error names the step, the thing and what was found, so that a log line alone is enough
to act on. Errors that are worth retrying say so with ``retriable = True``.
"""

from __future__ import annotations


class LakecastError(Exception):
    """Root of every error that lakecast raises on purpose."""

    retriable: bool = False


class ConfigError(LakecastError):
    """A configuration file or override is missing or invalid."""


class EnvironmentSetupError(LakecastError):
    """A tool the project needs (java, mvn) or a resolved artifact is missing."""


class LocalStackError(LakecastError):
    """The local broker or Spark cluster could not be started, stopped or reached."""


class PortInUseError(LocalStackError):
    """A port the local stack wants is already taken."""


class SchemaError(LakecastError):
    """A table or a record does not have the columns or types it must have."""


class DataError(LakecastError):
    """A record's values are invalid (bad JSON, unknown category, NaN, too large)."""


class RegistryError(LakecastError):
    """The model registry refused or could not find something."""


class ModelNotFoundError(RegistryError):
    """No model, version or alias of that name."""


class VersionConflictError(RegistryError):
    """A version breaks the semantic-versioning rules or races another writer."""

    retriable = True


class ModelIntegrityError(RegistryError):
    """An artifact's content does not match the sha256 the registry recorded."""


class UnsafeArtifactError(RegistryError):
    """An artifact asks to load a type that is not on our trusted list."""


class ScoringError(LakecastError):
    """Batch or online scoring failed for a reason worth stopping for."""


class RolloutError(LakecastError):
    """A rollout was refused (a gate failed) or cannot proceed."""


class StreamError(LakecastError):
    """A streaming service hit an error in its Kafka plumbing."""

    retriable = True


class KafkaAccessError(StreamError):
    """The broker refused this principal: a wrong password, or an ACL that does not allow it.

    Not worth retrying: the same credentials meet the same refusal.
    """

    retriable = False


class InvalidRecordError(DataError):
    """A Kafka record breaks its topic's contract; ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class VersionRuleError(VersionConflictError):
    """A version breaks the semantic-versioning rules (exists, or bumps too little).

    Not worth retrying, unlike a race with another writer.
    """

    retriable = False


class ScheduleError(LakecastError):
    """A scheduled run (``lakecast run daily``) was asked for something it cannot do."""


class RunLockedError(ScheduleError):
    """Another process holds the lake's lock on this run (a date of ``lakecast run daily``).

    Worth retrying later: the holder releases it when done, or its lease expires.
    """

    retriable = True
