"""SEV-SNP evidence through the Linux configfs-tsm report interface.

ABI: the kernel's Documentation/ABI/testing/configfs-tsm-report. A report is an
entry directory made with mkdir under ``/sys/kernel/config/tsm/report``: write
``inblob`` (the 64 bytes of REPORT_DATA) and optionally ``privlevel`` (the VMPL),
then read ``outblob`` (for provider ``sev_guest`` the 0x4A0-byte
ATTESTATION_REPORT) and ``auxblob`` (the host's certificate table, possibly empty).
``generation`` counts writes; if it moved by more than our own writes, another
process wrote to the entry in between and the outblob may answer its request, so
the request is made once more in a fresh entry.

This machine has no SEV-SNP guest kernel: the code is tested against a fake
configfs tree (``ConfigfsIo``) fed with reports from the emulated TEE.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import ClassVar, Protocol

from jobruntime.attestation.providers.certificate_table import sev_snp_certificates
from jobruntime.attestation.providers.errors import CollectError
from jobruntime.attestation.providers.evidence import Evidence, EvidenceKind, check_report_data

TSM_REPORT_DIR = Path("/sys/kernel/config/tsm/report")
PROVIDER = "sev_guest"
MAX_PRIVLEVEL = 3  # TSM_PRIVLEVEL_MAX


class ConfigfsIo(Protocol):
    """The four file operations the ABI needs; injectable because configfs is magic."""

    def mkdir(self, path: Path) -> None: ...
    def rmdir(self, path: Path) -> None: ...
    def read(self, path: Path) -> bytes: ...
    def write(self, path: Path, data: bytes) -> None: ...


class OsConfigfs:
    """The real thing: plain system calls (configfs creates the attributes on mkdir)."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: bytes) -> None:
        # One write(2): configfs attributes take their value from a single write.
        fd = os.open(path, os.O_WRONLY)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {path}")
        finally:
            os.close(fd)


class ConfigfsTsmProvider:
    """SEV-SNP evidence from ``report_dir`` (configfs-tsm, provider ``sev_guest``)."""

    kind: ClassVar[EvidenceKind] = "sev-snp"

    def __init__(
        self,
        report_dir: Path = TSM_REPORT_DIR,
        *,
        privlevel: int | None = None,
        io: ConfigfsIo | None = None,
    ) -> None:
        if privlevel is not None and not 0 <= privlevel <= MAX_PRIVLEVEL:
            raise ValueError(f"privlevel must be 0-{MAX_PRIVLEVEL}")
        self.report_dir = report_dir
        self.privlevel = privlevel
        self.io = io or OsConfigfs()

    def unavailable(self) -> str | None:
        """Why this provider cannot be used here, or None; probes with a throwaway entry."""
        if not self.report_dir.is_dir() or not os.access(self.report_dir, os.W_OK):
            return f"{self.report_dir}: missing or not writable"
        try:
            with _Entry(self) as entry:
                entry.check_provider()
        except (OSError, CollectError) as exc:
            return f"{self.report_dir}: {exc}"
        return None

    def collect(self, report_data: bytes) -> Evidence:
        check_report_data(report_data)
        for _ in range(2):
            blobs = self._request(report_data)
            if blobs is not None:
                report, table = blobs
                return Evidence(self.kind, report, sev_snp_certificates(report, table))
        raise CollectError(f"{self.report_dir}: another writer changed the request twice")

    def _request(self, report_data: bytes) -> tuple[bytes, bytes] | None:
        """outblob and auxblob, or None when ``generation`` shows a foreign write."""
        try:
            with _Entry(self) as entry:
                entry.check_provider()
                before = int(entry.text("generation"))
                writes = [("inblob", report_data)]
                if self.privlevel is not None:
                    writes.insert(0, ("privlevel", f"{self.privlevel}\n".encode()))
                for name, data in writes:
                    self.io.write(entry.path / name, data)
                report = self.io.read(entry.path / "outblob")
                table = self.io.read(entry.path / "auxblob")
                if int(entry.text("generation")) != before + len(writes):
                    return None
        except (OSError, ValueError) as exc:
            raise CollectError(f"configfs-tsm request in {self.report_dir} failed: {exc}") from None
        return report, table


class _Entry:
    """A fresh report entry, removed on exit whatever happened."""

    def __init__(self, provider: ConfigfsTsmProvider) -> None:
        self.io = provider.io
        self.path = provider.report_dir / f"jobruntime-{os.getpid()}-{secrets.token_hex(6)}"

    def __enter__(self) -> _Entry:
        self.io.mkdir(self.path)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.io.rmdir(self.path)

    def text(self, name: str) -> str:
        return self.io.read(self.path / name).decode("ascii", "replace").strip()

    def check_provider(self) -> None:
        provider = self.text("provider")
        if provider != PROVIDER:
            raise CollectError(f"configfs-tsm provider is {provider!r}, not {PROVIDER}")
