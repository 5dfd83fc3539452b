"""A small memo keyed on array values, for rules that share expensive work.

A linear solve's value, VJP and JVP all use one factorization of A; a custom
VJP's ``bwd`` gives the cotangents of every argument at once, while the
sweeps ask for them one argument at a time. The rules see only values (the
sweeps hand them views into the flat z), so the memo is keyed on the values
themselves: a 128-bit BLAKE2 digest of each array's bytes with its shape.
Equal values give the same entry, whatever array holds them, and an entry is
only ever a pure function of its key, so a hit cannot change a result.

>>> import numpy as np
>>> memo = ValueMemo(maxsize=2)
>>> calls = []
>>> square = lambda: calls.append(1) or 4.0
>>> memo.get(value_key(np.array(2.0)), square), memo.get(value_key(np.array(2.0)), square)
(4.0, 4.0)
>>> len(calls)
1
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

__all__ = ["ValueMemo", "value_key"]

T = TypeVar("T")


def value_key(*arrays: Any) -> tuple[Any, ...]:
    """A key for the values of ``arrays``: each one's shape and a digest of its bytes."""
    parts: list[Any] = []
    for a in arrays:
        arr = np.ascontiguousarray(a, dtype=float)
        parts.append(arr.shape)
        parts.append(hashlib.blake2b(memoryview(arr).cast("B"), digest_size=16).digest())
    return tuple(parts)


class ValueMemo:
    """A thread-safe least-recently-used memo of at most ``maxsize`` entries
    (and, roughly, ``maxbytes`` of array data; the newest entry always stays).

    It is a cache, not state: it pickles as an empty memo, and copies share
    nothing.
    """

    def __init__(self, maxsize: int = 16, maxbytes: int = 2**27) -> None:
        self.maxsize, self.maxbytes = maxsize, maxbytes
        self._entries: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any, build: Callable[[], T]) -> T:
        """The entry for ``key``, computed by ``build()`` on a miss."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit[0]  # type: ignore[no-any-return]
        value = build()  # outside the lock: another thread may build it too, harmlessly
        size = _nbytes(value)
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (value, size)
                self._bytes += size
            while len(self._entries) > 1 and (len(self._entries) > self.maxsize
                                              or self._bytes > self.maxbytes):
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
        return value

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ValueMemo, (self.maxsize, self.maxbytes))

    def __repr__(self) -> str:
        return f"<ValueMemo {len(self._entries)}/{self.maxsize} entries>"


def _nbytes(value: Any) -> int:
    """Array bytes held by an entry (arrays, also inside tuples; others count 0)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return int(getattr(value, "nbytes", 0))
