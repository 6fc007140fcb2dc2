"""AMD EPYC generations that run SEV-SNP, and how evidence names them.

The product decides how a TCB_VERSION is laid out and which ARK/ASK chain
endorses a chip, so verification always states the product it expects.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Product(StrEnum):
    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @property
    def has_fmc(self) -> bool:
        """Turin (Zen 5) added an FMC component to TCB_VERSION and reordered it."""
        return self is Product.TURIN


# CPUID(1).EAX family -> {product: model ranges}, as the report's CPUID_FAM/MOD fields give them.
_CPUID_MODELS: dict[int, tuple[tuple[Product, range], ...]] = {
    0x19: (
        (Product.MILAN, range(0x00, 0x10)),
        (Product.GENOA, range(0x10, 0x20)),
        (Product.GENOA, range(0xA0, 0xB0)),
    ),
    0x1A: ((Product.TURIN, range(0x00, 0x12)),),
}

_NAME = re.compile(r"(Milan|Genoa|Turin)(?:-[A-Z][0-9])?")


def product_from_cpuid(family: int, model: int) -> Product | None:
    for product, models in _CPUID_MODELS.get(family, ()):
        if model in models:
            return product
    return None


def product_from_name(name: str) -> Product | None:
    """``Milan``, ``Genoa-B0`` (the VCEK productName extension) -> the product."""
    match = _NAME.fullmatch(name)
    return Product(match.group(1)) if match else None
