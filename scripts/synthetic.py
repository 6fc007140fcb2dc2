"""Synthetic customer tables of two organisations that share some customers.

Deterministic for a seed, so the demo and the tests can recompute the expected
overlap in plain pandas.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

SEGMENTS = ("gold", "silver", "bronze", "trial")


def customers(
    seed: int = 7, size: int = 2000, shared: int = 900
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    people = [f"person{i}@example.org" for i in range(2 * size)]
    both = people[:shared]
    only_a = people[shared:size]
    only_b = people[size : 2 * size - shared]

    def table(emails: list[str], org: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                # Casing and spaces differ between organisations, as in real exports.
                "email": [
                    f"  {e.upper()} " if org == "b" and i % 3 == 0 else e
                    for i, e in enumerate(emails)
                ],
                "segment": [rng.choice(SEGMENTS) for _ in emails],
                "spend": [round(rng.uniform(5, 500), 2) for _ in emails],
            }
        )

    a = table(both + only_a, "a").sample(frac=1, random_state=seed).reset_index(drop=True)
    b = table(both + only_b, "b").sample(frac=1, random_state=seed + 1).reset_index(drop=True)
    return a, b


def expected_overlap(a: pd.DataFrame, b: pd.DataFrame, k: int) -> dict[str, int]:
    """The overlap job's answer in plain pandas: segments of A's shared customers, >= k."""
    key_b = set(b["email"].str.strip().str.lower())
    shared = a[a["email"].str.strip().str.lower().isin(key_b)]
    counts = shared.groupby("segment").size()
    return {str(s): int(n) for s, n in counts.items() if n >= k}


def write(directory: Path, seed: int = 7) -> tuple[Path, Path]:
    a, b = customers(seed)
    directory.mkdir(parents=True, exist_ok=True)
    pa_, pb = directory / "customers_a.csv", directory / "customers_b.csv"
    a.to_csv(pa_, index=False)
    b.to_csv(pb, index=False)
    return pa_, pb
