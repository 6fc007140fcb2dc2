"""Pick the evidence provider a pod uses: the hardware it finds, or the emulator if told.

Auto-detection never picks the emulated TEE; only an explicit ``emulated`` with the
emulated chip's directory does, and the KMS decides per key whether to accept it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from jobruntime.errors import ConfigError

if TYPE_CHECKING:
    from jobruntime.attestation.providers.base import EvidenceProvider

TeeChoice = Literal["auto", "emulated"]
TEE_CHOICES: tuple[TeeChoice, ...] = ("auto", "emulated")


EMULATED_HOST_DATA_ENV = "JOB_EMULATED_HOST_DATA"
"""Set by the local pod launcher (``jobruntime.dev.localpod``), as the host sets HOST_DATA."""


def provider_for(tee: str, emulated_dir: Path | None = None) -> EvidenceProvider:
    """Imports only the providers it may return: a pod holds the code of one, not all."""
    if tee == "auto":
        from jobruntime.attestation.providers.base import detect

        return detect()
    if tee == "emulated":
        from jobruntime.attestation.providers.emulated import (
            EMULATED_MEASUREMENT,
            EmulatedProvider,
            load_tee,
        )

        if emulated_dir is None:
            raise ConfigError("--tee emulated needs the emulated TEE's directory")
        return EmulatedProvider(
            load_tee(emulated_dir), measurement=EMULATED_MEASUREMENT, host_data=_launch_host_data()
        )
    raise ConfigError(f"unknown TEE {tee!r}: choose {', '.join(TEE_CHOICES)}")


def _launch_host_data() -> bytes:
    """The launcher's HOST_DATA for this pod; zeros when started by no pod launcher."""
    value = os.environ.get(EMULATED_HOST_DATA_ENV, "")
    try:
        data = bytes.fromhex(value) if value else bytes(32)
    except ValueError:
        data = b""
    if len(data) != 32:
        raise ConfigError(f"${EMULATED_HOST_DATA_ENV} is not 32 bytes of hex")
    return data
