"""Pick the evidence provider a pod uses: the hardware it finds, or the emulator if told.

Auto-detection never picks the emulated TEE; only an explicit ``emulated`` with the
emulated chip's directory does, and the KMS decides per key whether to accept it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from jobruntime.attestation.providers.base import EvidenceProvider, detect
from jobruntime.attestation.providers.emulated import (
    EMULATED_MEASUREMENT,
    EmulatedProvider,
    load_tee,
)
from jobruntime.errors import ConfigError

TeeChoice = Literal["auto", "emulated"]
TEE_CHOICES: tuple[TeeChoice, ...] = ("auto", "emulated")


def provider_for(tee: str, emulated_dir: Path | None = None) -> EvidenceProvider:
    if tee == "auto":
        return detect()
    if tee == "emulated":
        if emulated_dir is None:
            raise ConfigError("--tee emulated needs the emulated TEE's directory")
        return EmulatedProvider(load_tee(emulated_dir), measurement=EMULATED_MEASUREMENT)
    raise ConfigError(f"unknown TEE {tee!r}: choose {', '.join(TEE_CHOICES)}")
