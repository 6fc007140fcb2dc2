"""What a native confidential read or write tells the JVM, as Parquet/Hadoop options.

Spark copies a file source's options into the Hadoop configuration its tasks read, so
these reach the crypto factory, the KMS client and the commit protocol of
``java/jobruntime-kms`` on every executor. They hold dataset names, key ids, the agent's
socket path, file paths, sizes and ciphertext digests: **never key material** (the
factory refuses weaker PME settings than these, so they are checked, not trusted).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from jobruntime.dataset.manifest import AnyFileEntry, Manifest, WholeFileEntry

FACTORY = "jobruntime.kms.ConfidentialCryptoFactory"
KMS_CLIENT = "jobruntime.kms.KeyAgentKmsClient"
COMMIT_PROTOCOL = "jobruntime.kms.ConfidentialCommitProtocol"
VERIFIED_FS = "jobruntime.kms.VerifiedLocalFileSystem"
STAGED_PARTS = "jobruntime.kms.StagedParts"
INSTANCE_ID = "jobruntime-key-agent"  # also what pyarrow's writer records (dataset/pme.py)
ALGORITHM = "AES_GCM_V1"


def hadoop_root(uri: str) -> str | None:
    """The dataset root as a Hadoop path, or None where the native path cannot go.

    Local datasets only: the image has no Hadoop connector for Azure Blob Storage, so
    ``az://`` datasets stay on the Python data source.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not scheme and uri.startswith("/"):
        return "file://" + uri.rstrip("/")
    if scheme == "file" and not parts.netloc:
        return "file://" + unquote(parts.path).rstrip("/")
    return None


def scope(dataset: str, socket: str) -> str:
    """Parquet's KMS-client and KEK caches are per access token: one scope per dataset and agent."""
    return f"jobruntime|{dataset}|{socket}"


def crypto(dataset: str, key_id: str, socket: str, uri: str) -> dict[str, str]:
    """The settings both directions share: this KMS client, double wrapping, key material inside."""
    return {
        "parquet.crypto.factory.class": FACTORY,
        "parquet.encryption.kms.client.class": KMS_CLIENT,
        "parquet.encryption.kms.instance.id": INSTANCE_ID,
        "parquet.encryption.kms.instance.url": "DEFAULT",
        "parquet.encryption.key.access.token": scope(dataset, socket),
        "parquet.encryption.double.wrapping": "true",
        "parquet.encryption.key.material.store.internally": "true",
        "jobruntime.dataset": dataset,
        "jobruntime.key.id": key_id,
        "jobruntime.keyagent.socket": socket,
        "jobruntime.uri": uri,
    }


def read(manifest: Manifest, root: str, dataset: str, socket: str) -> dict[str, str]:
    """A read of exactly the manifest's files, each checked against its size and digest."""
    listed = ",".join(_listed(f) for f in manifest.files)
    return {
        **crypto(dataset, manifest.key_id, socket, manifest.dataset),
        "jobruntime.root": root,
        "jobruntime.files": listed,
        # Every open serves the verified footer bytes: what Parquet decodes is what was checked.
        "fs.file.impl": VERIFIED_FS,
        "fs.file.impl.disable.cache": "true",
        # A file the factory refuses must fail the query, never be skipped as "corrupt".
        "ignoreCorruptFiles": "false",
        "ignoreMissingFiles": "false",
    }


def _listed(entry: AnyFileEntry) -> str:
    """``path:size:footer:<digest>`` (schema 2), or ``path:size:whole:<digest>`` (schema 1)."""
    if isinstance(entry, WholeFileEntry):
        return f"{entry.path}:{entry.size}:whole:{entry.sha256}"
    return f"{entry.path}:{entry.size}:footer:{entry.footer_sha256}"


def write(dataset: str, key_id: str, socket: str, uri: str, write_id: str) -> dict[str, str]:
    """A write of uniform AES_GCM_V1 files with encrypted footers, one part per task."""
    return {
        **crypto(dataset, key_id, socket, uri),
        "parquet.encryption.uniform.key": key_id,
        "parquet.encryption.algorithm": ALGORITHM,
        "parquet.encryption.plaintext.footer": "false",
        "jobruntime.write.id": write_id,
        "maxRecordsPerFile": "0",
    }
