"""Row-group skipping from Spark's pushed filters, using the decrypted footer's statistics.

Only simple comparisons of a top-level column with a literal are used; every
filter is still handed back to Spark, which re-applies it to the rows, so a
skipped row group is an optimisation and never the only check.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql.datasource import (
    EqualTo,
    Filter,
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
)

# Can a row group with values in [lo, hi] hold a row matching ``column OP value``?
_MAY_MATCH: dict[type, Callable[[Any, Any, Any], bool]] = {
    EqualTo: lambda lo, hi, v: lo <= v <= hi,
    GreaterThan: lambda lo, hi, v: operator.gt(hi, v),
    GreaterThanOrEqual: lambda lo, hi, v: operator.ge(hi, v),
    LessThan: lambda lo, hi, v: operator.lt(lo, v),
    LessThanOrEqual: lambda lo, hi, v: operator.le(lo, v),
}


@dataclass(frozen=True)
class Bound:
    column: str
    kind: type
    value: Any


def bounds(filters: Iterable[Filter]) -> list[Bound]:
    found = []
    for f in filters:
        kind = type(f)
        path: tuple[str, ...] = tuple(getattr(f, "attribute", ()))
        value = getattr(f, "value", None)
        if kind in _MAY_MATCH and len(path) == 1 and value is not None:
            found.append(Bound(path[0], kind, value))
    return found


def row_group_filter(found: list[Bound], names: list[str]) -> Callable[[Any], bool] | None:
    if not found:
        return None
    index = {name: i for i, name in enumerate(names)}

    def keep(group: pq.RowGroupMetaData) -> bool:
        for b in found:
            if b.column not in index:
                continue
            stats = group.column(index[b.column]).statistics
            if stats is None or not stats.has_min_max:
                continue
            try:
                if not _MAY_MATCH[b.kind](stats.min, stats.max, b.value):
                    return False
            except TypeError:
                continue  # a type the statistics do not compare with: keep the group
        return True

    return keep
