"""Which allocator CPython itself uses for objects, measured in the interpreter.

``PYTHONMALLOC`` only says what was asked: ``python -E`` ignores it, ``-X dev`` and
``PYTHONMALLOC=debug`` add debug hooks, and an embedding application can install its own.
So we ask the interpreter for the allocator functions it really holds
(``PyMem_GetAllocator`` for the raw, mem and object domains) and read their shape:

- pymalloc: the mem and object domains share pymalloc's functions; raw is malloc's
- malloc: all three domains share one function, with no context
- mimalloc (3.13+): the mem and object domains each have their own mimalloc function
- debug hooks: the mem and object domains share the hook function (raw has its own), each
  domain with a context that starts with its id (``'r'``, ``'m'``, ``'o'``) followed by
  the allocator it wraps, which is then read the same way
- tracemalloc, while it traces: its hooks' contexts are the allocators they wrap
- anything else (an embedder's hooks): reported as unknown

Function pointers are compared, never named: CPython's allocator functions are static.
"""

from __future__ import annotations

import ctypes
import sys
import tracemalloc
from dataclasses import dataclass

_DOMAINS = (0, 1, 2)  # PYMEM_DOMAIN_RAW, _MEM, _OBJ
_DEBUG_IDS = (b"r", b"m", b"o")


class _Allocator(ctypes.Structure):  # PyMemAllocatorEx
    _fields_ = (
        ("ctx", ctypes.c_void_p),
        ("malloc", ctypes.c_void_p),
        ("calloc", ctypes.c_void_p),
        ("realloc", ctypes.c_void_p),
        ("free", ctypes.c_void_p),
    )


class _DebugApi(ctypes.Structure):  # debug_alloc_api_t: {char api_id; PyMemAllocatorEx alloc}
    _fields_ = (("api_id", ctypes.c_char), ("alloc", _Allocator))


@dataclass(frozen=True)
class PythonAllocator:
    name: str  # 'pymalloc', 'malloc', 'mimalloc' or 'unknown'
    debug_hooks: bool  # PYTHONMALLOC=debug / *_debug, or -X dev
    detail: str  # one line for people


def _get(domain: int) -> _Allocator:
    get = ctypes.pythonapi.PyMem_GetAllocator
    get.argtypes, get.restype = (ctypes.c_int, ctypes.POINTER(_Allocator)), None
    alloc = _Allocator()
    get(domain, ctypes.byref(alloc))
    return alloc


def _classify(raw: _Allocator, mem: _Allocator, obj: _Allocator) -> str:
    if raw.malloc == mem.malloc == obj.malloc and not (raw.ctx or mem.ctx or obj.ctx):
        return "malloc"
    if mem.malloc == obj.malloc and obj.malloc != raw.malloc and not (mem.ctx or obj.ctx):
        return "pymalloc"
    if len({raw.malloc, mem.malloc, obj.malloc}) == 3 and not (mem.ctx or obj.ctx):
        return "mimalloc"
    return "unknown"


def _unwrap_debug(allocs: list[_Allocator]) -> list[_Allocator] | None:
    """The allocators the debug hooks wrap, or None when these are not CPython's hooks."""
    if allocs[1].malloc != allocs[2].malloc or not all(a.ctx for a in allocs):
        return None
    apis = [_DebugApi.from_address(a.ctx) for a in allocs]
    if tuple(api.api_id for api in apis) != _DEBUG_IDS:
        return None
    return [api.alloc for api in apis]


_SIZES = {
    "pymalloc": "pymalloc (objects up to 512 bytes), malloc above",
    "malloc": "malloc (every object goes to the C allocator)",
    "mimalloc": "mimalloc (CPython's bundled copy)",
}


def measure() -> PythonAllocator:
    """What this interpreter's object allocator is, as installed now."""
    if sys.implementation.name != "cpython":
        return PythonAllocator("unknown", False, f"unknown ({sys.implementation.name})")
    try:
        allocs = [_get(d) for d in _DOMAINS]
    except (AttributeError, OSError, ValueError) as e:  # no PyMem_GetAllocator exported
        return PythonAllocator("unknown", False, f"unknown (PyMem_GetAllocator: {e})")
    traced = tracemalloc.is_tracing() and all(a.ctx for a in allocs)
    if traced:
        allocs = [_Allocator.from_address(a.ctx) for a in allocs]
    inner = _unwrap_debug(allocs)
    debug = inner is not None
    name = _classify(*(inner or allocs))
    if name == "unknown":
        return PythonAllocator("unknown", debug, "unknown: the allocator is hooked by the host")
    detail = _SIZES[name] + (", with CPython's debug hooks" if debug else "")
    return PythonAllocator(name, debug, detail + (", traced by tracemalloc" if traced else ""))


def declared(pythonmalloc: str | None) -> tuple[str, bool] | None:
    """(allocator, debug hooks) that a PYTHONMALLOC value asks for; None when unset or
    'default' (the interpreter's own choice: pymalloc, or debug hooks in a debug build)."""
    value = (pythonmalloc or "").strip()
    if value in ("", "default"):
        return None
    if value == "debug":
        return "pymalloc", True
    name, _, hooks = value.partition("_")
    return name, hooks == "debug"
