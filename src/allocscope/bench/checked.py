"""Checked readers for the typed records of a results file (runs, evidence, header).

Every ``from_dict`` of a record reads its fields through these: a wrong type or an
impossible value (a negative RSS, a NaN time) is a :class:`RecordError` naming the field,
never a number in a table. ``what`` is the field's path for that message
(``run glibc.evidence.growth``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from allocscope.errors import AllocscopeError


class RecordError(AllocscopeError):
    """A record that does not hold what it claims: wrong types, impossible values."""


def mapping(doc: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise RecordError(f"{what}: expected an object, not {type(doc).__name__}")
    return doc


def text(doc: Mapping[str, Any], key: str, what: str, *, optional: bool = False) -> Any:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what}.{key}: expected text, not {value!r:.60}")
    return value


def boolean(doc: Mapping[str, Any], key: str, what: str, default: bool | None = None) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise RecordError(f"{what}.{key}: expected true or false, not {value!r:.60}")
    return value


def number(value: Any, what: str, *, optional: bool = False) -> float | None:
    """A finite, non-negative number (RSS, seconds, counts): anything else is impossible."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{what}: expected a number, not {value!r:.60}")
    if not math.isfinite(value) or value < 0:
        raise RecordError(f"{what}: impossible value {value!r}")
    return float(value)


def signed(value: Any, what: str) -> float:
    """A finite number that may be negative (a slope)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{what}: expected a number, not {value!r:.60}")
    if not math.isfinite(value):
        raise RecordError(f"{what}: impossible value {value!r}")
    return float(value)


def whole(value: Any, what: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{what}: expected a whole number, not {value!r:.60}")
    return value


def count(value: Any, what: str, *, optional: bool = False) -> int | None:
    """A whole number of 0 or more (requests, bytes, processes)."""
    found = whole(value, what, optional=optional)
    if found is not None and found < 0:
        raise RecordError(f"{what}: impossible value {found}")
    return found


def items(doc: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = doc.get(key, [])
    if value is None:
        return []
    if isinstance(value, tuple):
        return list(value)
    if not isinstance(value, list):
        raise RecordError(f"{what}.{key}: expected a list, not {type(value).__name__}")
    return value


def texts(doc: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    out = items(doc, key, what)
    for value in out:
        if not isinstance(value, str):
            raise RecordError(f"{what}.{key}: expected text, not {value!r:.60}")
    return tuple(out)


def objects(doc: Mapping[str, Any], key: str, what: str) -> tuple[dict[str, Any], ...]:
    return tuple(dict(mapping(v, f"{what}.{key}[]")) for v in items(doc, key, what))


def numbers(doc: Mapping[str, Any], key: str, what: str) -> tuple[float, ...] | None:
    """A list of possible numbers, or None when the key is absent."""
    if doc.get(key) is None:
        return None
    return tuple(number(v, f"{what}.{key}") or 0.0 for v in items(doc, key, what))


def object_or_none(doc: Mapping[str, Any], key: str, what: str) -> dict[str, Any] | None:
    value = doc.get(key)
    return None if value is None else dict(mapping(value, f"{what}.{key}"))


def present(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A record's dict without the fields it does not have (None): the JSON stays as small
    as the older writers made it."""
    return {k: v for k, v in doc.items() if v is not None}
