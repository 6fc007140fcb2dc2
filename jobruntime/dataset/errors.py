"""Why an encrypted dataset could not be read or written; messages name dataset and file.

Also why the plaintext file an owner encrypts could not be read (``source.*``).
"""

from __future__ import annotations

from jobruntime.errors import ConfigError, JobRuntimeError


class DatasetError(JobRuntimeError):
    """An encrypted dataset could not be used."""

    code = "dataset.invalid"
    exit_code = 24


class ManifestMissingError(DatasetError):
    """No manifest, or not the version the control plane recorded as latest."""

    code = "dataset.manifest_missing"


class ManifestInvalidError(DatasetError):
    """The manifest is malformed or its authentication code does not verify (altered)."""

    code = "dataset.manifest_invalid"


class WrongKeyError(DatasetError):
    """The key given is not the dataset's key (the manifest's key check differs)."""

    code = "dataset.wrong_key"


class RollbackError(DatasetError):
    """An older or different manifest than the control plane recorded as latest."""

    code = "dataset.rollback"


class FileMissingError(DatasetError):
    """A file the manifest lists is not in storage."""

    code = "dataset.file_missing"


class FileExtraError(DatasetError):
    """Storage holds a file in the version that the manifest does not list."""

    code = "dataset.file_extra"


class FileTruncatedError(DatasetError):
    """A file's size differs from the manifest's."""

    code = "dataset.file_truncated"


class FileCorruptError(DatasetError):
    """A file is not what the manifest pins: replaced, or a module altered (fails PME's check)."""

    code = "dataset.file_corrupt"


class DecryptError(DatasetError):
    """Parquet Modular Encryption refused the file (wrong key or altered bytes)."""

    code = "dataset.decrypt"


class WriteError(DatasetError):
    """A write could not be committed; no new version is visible."""

    code = "dataset.write"


class VersionConflictError(DatasetError):
    """Another writer published this version first."""

    code = "dataset.version_conflict"


# --- the plaintext an owner encrypts (a local file: exit 2, like any unusable input) ------


class SourceError(ConfigError):
    """The CSV or Parquet file to encrypt cannot be read; nothing was written."""

    code = "source.invalid"


class SourceMalformedError(SourceError):
    """The file to encrypt is malformed; a CSV's fault names line and column, never a value."""

    code = "source.malformed"


class SourceEmptyError(SourceError):
    """The file to encrypt has no rows; refused, as an empty version would replace the data."""

    code = "source.empty"
