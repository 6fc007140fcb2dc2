"""TCB_VERSION: the firmware security patch levels a report and a VCEK are bound to.

The same eight bytes mean different things per generation: Milan and Genoa are
bootloader, tee, 4 reserved, snp, microcode; Turin is fmc, bootloader, tee, snp,
3 reserved, microcode. Decoding therefore always takes the product.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobruntime.attestation.product import Product

# Byte index of each component inside the little-endian 64-bit TCB_VERSION.
_LEGACY_LAYOUT = {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7}
_TURIN_LAYOUT = {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7}


def _layout(product: Product) -> dict[str, int]:
    return _TURIN_LAYOUT if product.has_fmc else _LEGACY_LAYOUT


@dataclass(frozen=True)
class TcbParts:
    """Decoded security patch levels; ``fmc`` exists on Turin only."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    def __post_init__(self) -> None:
        for name, value in self.components().items():
            if not 0 <= value <= 0xFF:
                raise ValueError(f"TCB component {name}={value} is not one byte")

    def components(self) -> dict[str, int]:
        values = {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.fmc is not None:
            values = {"fmc": self.fmc, **values}
        return values

    def below(self, minimum: TcbParts) -> list[str]:
        """Components lower than ``minimum``'s, as ``name=value<min`` strings."""
        mine = self.components()
        return [
            f"{name}={mine.get(name, 0)}<{floor}"
            for name, floor in minimum.components().items()
            if mine.get(name, 0) < floor
        ]

    def __str__(self) -> str:
        return " ".join(f"{name}={value}" for name, value in self.components().items())


@dataclass(frozen=True)
class TcbVersion:
    """The raw 64-bit TCB_VERSION as it appears in a report."""

    raw: int

    def __post_init__(self) -> None:
        if not 0 <= self.raw < 1 << 64:
            raise ValueError("TCB_VERSION is 64 bits")

    def parts(self, product: Product) -> TcbParts:
        data = self.raw.to_bytes(8, "little")
        values = {name: data[index] for name, index in _layout(product).items()}
        return TcbParts(**values)

    @classmethod
    def from_parts(cls, parts: TcbParts, product: Product) -> TcbVersion:
        if (parts.fmc is not None) != product.has_fmc:
            raise ValueError(f"{product} TCB {'needs' if product.has_fmc else 'has no'} fmc")
        data = bytearray(8)
        for name, index in _layout(product).items():
            data[index] = parts.components()[name]
        return cls(int.from_bytes(data, "little"))
