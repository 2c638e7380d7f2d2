"""The snapshot's JSON schema, derived from the records themselves so it cannot drift."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is tuple:
        return f"list[{_type_name(args[0])}]"
    if origin is dict:
        return f"object[{_type_name(args[0])}, {_type_name(args[1])}]"
    if dataclasses.is_dataclass(tp):
        return "object"
    if tp is type(None):
        return "null"
    return {str: "string", int: "integer", bool: "boolean", float: "number"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _record_of(tp: Any) -> Any | None:
    """The dataclass inside a type such as ``X | None`` or ``tuple[X, ...]``."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _record_of(arg)
        if found is not None:
            return found
    return None


def describe(record: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted JSON path, type) for every field; lists of records use ``[]``."""
    rows = []
    for name, tp in typing.get_type_hints(record).items():
        path = f"{prefix}{name}"
        rows.append((path, _type_name(tp)))
        inner = _record_of(tp)
        if inner is not None:
            sep = "[]." if typing.get_origin(tp) is tuple else "."
            rows += describe(inner, path + sep)
    return rows
