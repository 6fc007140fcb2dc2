"""Evidence from the emulated TEE, and one emulated platform shared through a directory.

For local work and tests only: ``detect()`` never returns this provider, and a
verifier refuses its chain unless ``allow_emulated``. A control-plane emulator and
a local pod share one platform by ``save_tee`` in one process and ``load_tee`` in
the other. The directory holds the ARK, ASK and VCEK certificates and the VCEK
private key (0600); the ARK/ASK private keys are not kept by ``EmulatedTee`` and so
are not saved: a loaded TEE signs reports but cannot issue a new VCEK.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from jobruntime.attestation.certs import (
    AmdCertificate,
    EndorsementExtensions,
    ProductChain,
    certificates_pem,
    load_certificates,
)
from jobruntime.attestation.emulated import DEFAULT_GUEST_POLICY, EmulatedTee
from jobruntime.attestation.providers.evidence import Evidence, EvidenceKind, check_report_data
from jobruntime.errors import AttestationError, ConfigError
from jobruntime.fsutil import write_private

ARK_FILE, ASK_FILE, VCEK_FILE, KEY_FILE = "ark.pem", "ask.pem", "vcek.pem", "vcek-key.pem"
EMULATED_MEASUREMENT = hashlib.sha384(b"jobruntime emulated guest").digest()
"""The launch measurement local pods report; dev release policies allow it."""


@dataclass(frozen=True)
class EmulatedProvider:
    """Reports from ``tee`` with these launch parameters, with its VCEK, ASK and ARK."""

    tee: EmulatedTee
    measurement: bytes = bytes(48)
    policy: int = DEFAULT_GUEST_POLICY
    host_data: bytes = bytes(32)
    guest_svn: int = 0
    vmpl: int = 0
    kind: ClassVar[EvidenceKind] = "emulated"

    def collect(self, report_data: bytes) -> Evidence:
        check_report_data(report_data)
        report = self.tee.report(
            report_data=report_data,
            measurement=self.measurement,
            host_data=self.host_data,
            policy=self.policy,
            guest_svn=self.guest_svn,
            vmpl=self.vmpl,
        )
        chain = certificates_pem([self.tee.vcek, self.tee.chain.ask, self.tee.chain.ark])
        return Evidence(self.kind, report, chain)


def save_tee(tee: EmulatedTee, directory: Path) -> None:
    """Write ``tee`` to ``directory``; refuses to replace a platform already saved there."""
    key = tee.vcek_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        write_private(directory / KEY_FILE, key)  # first: it is the exclusive create
    except FileExistsError:
        raise ConfigError(f"{directory} already holds an emulated TEE") from None
    for name, cert in ((ARK_FILE, tee.chain.ark), (ASK_FILE, tee.chain.ask), (VCEK_FILE, tee.vcek)):
        (directory / name).write_text(cert.to_pem())


def load_tee(directory: Path) -> EmulatedTee:
    """The TEE ``save_tee`` wrote; product, TCB and chip id come from the VCEK itself."""
    try:
        ark, ask, vcek = (_certificate(directory / n) for n in (ARK_FILE, ASK_FILE, VCEK_FILE))
        key = serialization.load_pem_private_key((directory / KEY_FILE).read_bytes(), None)
        chain = ProductChain(ark=ark, ask=ask)
        extensions = EndorsementExtensions.of(vcek, chain.product)
    except (OSError, ValueError, AttestationError) as exc:
        raise ConfigError(f"{directory} does not hold an emulated TEE: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != vcek.public_key():
        raise ConfigError(f"{directory}: the private key is not the VCEK's")
    if not chain.emulated or not vcek.is_issued_by(ask) or extensions.hwid is None:
        raise ConfigError(f"{directory}: not an emulated ARK -> ASK -> VCEK chain")
    chip_id = extensions.hwid.ljust(64, b"\0")  # Turin hwIDs are the first 8 bytes
    return EmulatedTee(chain.product, chain, vcek, extensions.tcb, chip_id, key)


def _certificate(path: Path) -> AmdCertificate:
    (certificate,) = load_certificates(path.read_bytes())
    return certificate
