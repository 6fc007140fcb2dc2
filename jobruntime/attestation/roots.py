"""AMD's published ARK/ASK (and ASVK) chains, pinned into the package at build time.

They are public certificates (AMD KDS ``/vcek/v1/<product>/cert_chain``); pinning
them means nothing at run time decides which roots are trusted.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from jobruntime.attestation.certs import ProductChain


@cache
def amd_chains() -> tuple[ProductChain, ...]:
    folder = resources.files("jobruntime.attestation") / "amd"
    return tuple(
        ProductChain.from_pem(entry.read_bytes())
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".pem")
    )
