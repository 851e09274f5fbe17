"""SeriesRing: named float columns sharing one ring of timestamps, in a memory fixed when it is made.

Each column is a float32 array of ``capacity`` points, created the first time its key gets a value, and a point a
column was not given is NaN. At most ``max_series`` columns exist: a new key beyond that takes the place of a
column with no value left in the ring (an instance that went away, an error code not seen for the whole period), or
is dropped. So the ring never holds more than ``capacity × (8 + 4 × max_series)`` bytes of samples, whatever runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Window:
    """Points of a ring, oldest first: ``t`` (seconds since the epoch) and the columns (NaN: no value)."""

    t: Floats
    columns: Mapping[str, npt.NDArray[np.floating[Any]]]


class SeriesRing:
    """The last ``capacity`` samples of up to ``max_series`` named columns (see the module's docstring)."""

    def __init__(self, capacity: int, max_series: int) -> None:
        if capacity < 1 or max_series < 1:
            raise ValueError("a ring needs room for one point of one column")
        self.capacity = capacity
        self.max_series = max_series
        self._t = np.full(capacity, np.nan, dtype=np.float64)
        self._columns: dict[str, npt.NDArray[np.float32]] = {}
        self._last: dict[str, int] = {}  # the sample number at which each column last got a value
        self._count = 0  # samples ever appended
        self._refused: set[str] = set()

    def __len__(self) -> int:
        return min(self._count, self.capacity)

    @property
    def nbytes(self) -> int:
        """Bytes the samples take now (at most ``capacity × (8 + 4 × max_series)``)."""
        return int(self._t.nbytes + sum(column.nbytes for column in self._columns.values()))

    def keys(self) -> list[str]:
        return list(self._columns)

    def live(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix`` that still have a value in the ring."""
        oldest = self._count - self.capacity
        return [key for key in self._columns if key.startswith(prefix) and self._last[key] >= oldest]

    def append(self, t: float, values: Mapping[str, float]) -> None:
        """One sample at ``t``: ``values`` by key (NaN for any column not named)."""
        slot = self._count % self.capacity
        self._t[slot] = t
        for column in self._columns.values():
            column[slot] = np.nan
        for key, value in values.items():
            target = self._columns[key] if key in self._columns else self._add(key)
            if target is not None:
                target[slot] = value
                self._last[key] = self._count
        self._count += 1

    def last(self, key: str) -> float:
        """The newest point of ``key`` (NaN if it has none there)."""
        column = self._columns.get(key)
        if column is None or not self._count:
            return math.nan
        return float(column[(self._count - 1) % self.capacity])

    def window(self, since: float) -> Window:
        """Copies of the points at or after ``since`` (seconds since the epoch), oldest first; columns with no value
        among them are left out. The copying is quick (about 1 MB for a day); ``downsample`` is the slow part."""
        n = len(self)
        order = np.arange(self._count - n, self._count) % self.capacity
        keep = order[self._t[order] >= since]
        columns = {key: column[keep] for key, column in self._columns.items() if self._last[key] >= self._count - n}
        return Window(self._t[keep], columns)

    def _add(self, key: str) -> npt.NDArray[np.float32] | None:
        if len(self._columns) >= self.max_series:
            oldest = self._count - self.capacity
            dead = next((k for k in self._columns if self._last[k] < oldest), None)
            if dead is None:
                if key not in self._refused:
                    self._refused.add(key)
                    logger.warning("metrics history: no room for a series %s (%d kept)", key, self.max_series)
                return None
            del self._columns[dead], self._last[dead]
        column = np.full(self.capacity, np.nan, dtype=np.float32)
        self._columns[key] = column
        return column


Reduce = Callable[[Floats], Floats]


def mean(block: Floats) -> Floats:
    """Each row's mean over its values (NaN where a row has none), without numpy's empty-slice warning."""
    present = ~np.isnan(block)
    counts = present.sum(axis=1)
    sums = np.where(present, block, 0.0).sum(axis=1)
    out = np.full(len(block), np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def highest(block: Floats) -> Floats:
    out: Floats = np.fmax.reduce(block, axis=1)
    return out


def lowest(block: Floats) -> Floats:
    out: Floats = np.fmin.reduce(block, axis=1)
    return out


def downsample(window: Window, max_points: int, how: Callable[[str], Reduce]) -> tuple[Window, int]:
    """At most ``max_points`` points: runs of ``k`` consecutive points become one (the newest point's time, the run
    reduced as ``how(key)`` says; the oldest run may be short). Returns the points and ``k``."""
    n = len(window.t)
    k = max(1, math.ceil(n / max_points))
    if k == 1:
        return window, 1
    pad = (-n) % k

    def blocks(values: Floats) -> Floats:
        return np.concatenate([np.full(pad, np.nan), values]).reshape(-1, k)

    t = highest(blocks(window.t))
    return Window(t, {key: how(key)(blocks(values.astype(np.float64))) for key, values in window.columns.items()}), k
