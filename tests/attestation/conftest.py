"""Shared material: AMD's pinned chains, the genuine fixtures and emulated chips."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from jobruntime.attestation import AttestationReport, EmulatedTee, Product, ProductChain

DATA = Path(__file__).parent / "data"
PINNED = resources.files("jobruntime.attestation") / "amd"
"""The package's own pinned chains: the tests need nothing outside the repository."""
SHARED_AMD = Path(__file__).parents[3] / "shared" / "amd"
AMD_FILES = {
    Product.MILAN: "ask_ark_milan.pem",
    Product.GENOA: "ask_ark_genoa.pem",
    Product.TURIN: "ask_ark_turin_vcek.pem",
}


class AcceptAll:
    """A policy with no opinion, to test steps 1-3 alone."""

    def verify(self, report: AttestationReport) -> None:
        return None


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture(scope="session")
def amd_chains() -> dict[Product, ProductChain]:
    return {p: ProductChain.from_pem((PINNED / f).read_bytes()) for p, f in AMD_FILES.items()}


@pytest.fixture(scope="session")
def tee() -> EmulatedTee:
    return EmulatedTee.create(Product.GENOA)


@pytest.fixture(scope="session")
def other_tee() -> EmulatedTee:
    return EmulatedTee.create(Product.GENOA)


@pytest.fixture(scope="session")
def turin_tee() -> EmulatedTee:
    return EmulatedTee.create(Product.TURIN)
