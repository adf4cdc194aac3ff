"""The Text space of observations and actions: every Unicode character SQL text may hold.

Gymnasium's :class:`~gymnasium.spaces.Text` checks membership against an explicit character
set, and its shared-memory codec (used by ``AsyncVectorEnv``) stores indices into that set, so a
query with ``'東京'`` or an action with ``’`` fell outside the space, and async vector
environments returned blanks. :class:`SQLText` admits every code point except NUL and lone
surrogates (which no SQL engine accepts as text), samples from printable ASCII, and registers a
shared-memory codec that stores code points, so vector environments carry any text unchanged.
"""

from __future__ import annotations

import multiprocessing as mp
import string
from collections.abc import Sequence
from multiprocessing.sharedctypes import SynchronizedArray
from types import ModuleType
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils.shared_memory import (
    create_shared_memory,
    read_from_shared_memory,
    write_to_shared_memory,
)

SAMPLE_CHARSET = string.printable
"""The characters :meth:`SQLText.sample` draws from (membership admits far more)."""


def _admissible(char: str) -> bool:
    code = ord(char)
    return code != 0 and not 0xD800 <= code <= 0xDFFF


class SQLText(spaces.Text):
    """A Text space admitting any Unicode text without NUL or lone surrogates.

    >>> space = SQLText(max_length=100)
    >>> space.contains("SELECT '東京', '’' FROM t"), space.contains("a\\x00b"), space.contains("\\ud800")
    (True, False, False)
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | None = None) -> None:
        super().__init__(max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        """Whether ``x`` is text of an admitted length without NUL or lone surrogates."""
        return (
            isinstance(x, str) and self.min_length <= len(x) <= self.max_length and all(map(_admissible, x))
        )

    def __repr__(self) -> str:
        return f"SQLText({self.min_length}, {self.max_length}, charset=Unicode)"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SQLText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )

    __hash__ = spaces.Text.__hash__


@create_shared_memory.register(SQLText)
def _create(space: SQLText, n: int = 1, ctx: ModuleType = mp) -> SynchronizedArray:
    return ctx.Array(np.dtype(np.int32).char, n * (space.max_length + 1))


@write_to_shared_memory.register(SQLText)
def _write(space: SQLText, index: int, value: str, shared_memory: SynchronizedArray) -> None:
    size = space.max_length + 1
    destination = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)
    codes = np.frombuffer(value.encode("utf-32-le"), dtype=np.int32)
    destination[index * size] = len(codes)
    destination[index * size + 1 : index * size + 1 + len(codes)] = codes


class LiveText(Sequence):
    """The texts of a vector environment's shared memory, decoded when read.

    ``AsyncVectorEnv`` reads its shared memory once and relies on getting live views (as numpy
    arrays are); Gymnasium's own Text codec returns the strings of that first moment, so every
    later observation looked empty. This sequence decodes the buffer on access, and a deep copy
    (what the vector environment hands out with ``copy=True``) is a plain tuple of strings.
    """

    def __init__(self, shared_memory: SynchronizedArray, n: int, width: int) -> None:
        self._data = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape((n, width))

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        row = self._data[index]
        return row[1 : 1 + int(row[0])].tobytes().decode("utf-32-le")

    def __len__(self) -> int:
        return len(self._data)

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return repr(tuple(self))


@read_from_shared_memory.register(SQLText)
def _read(space: SQLText, shared_memory: SynchronizedArray, n: int = 1) -> LiveText:
    return LiveText(shared_memory, n, space.max_length + 1)


__all__ = ["SAMPLE_CHARSET", "LiveText", "SQLText"]
