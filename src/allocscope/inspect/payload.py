"""The code ``--attach`` hands to the target's interpreter, and the buffer it answers in.

The target runs one line, ``exec(BOOT, {})``, from a pending call (so in its main thread,
with the GIL). BOOT carries allocscope's probe as source and imports it through a
meta-path finder of its own, so the target needs nothing installed (a target that has
its own allocscope keeps it: those modules step aside and come back); afterwards it
removes the finder and every module it added to ``sys.modules``. The answer
is JSON written into the same anonymous mapping the caller created (through
``sys.remote_exec``, into files of a directory the caller made, see ``script``):

    [0:8] state (0 pending, 1 answered, 2 the caller gave up)  [8:16] length
    [16:16+RESULT_MAX] the JSON answer  [CODE_AT:] the NUL-terminated line to run
"""

from __future__ import annotations

from pathlib import Path

RESULT_MAX = 1 << 20
CODE_AT = 16 + RESULT_MAX
PACKAGE = Path(__file__).resolve().parents[1]  # src/allocscope

_BOOT = """
def _allocscope_attach(addr, size, trim, sources, packages, out=None):
    import os, sys  # both always in sys.modules: importing them adds nothing
    if out is not None:  # sys.remote_exec: the answer goes to files in the directory `out`
        try:
            os.unlink(out + "/probe.py")
        except OSError:
            pass
        if os.path.exists(out + "/abandoned"):  # the caller gave up waiting: tidy up
            _allocscope_tidy(out)
            return
    # The target's own allocscope (another version, maybe) steps aside while ours runs.
    own = {n: m for n, m in sys.modules.items() if n == "allocscope" or n.startswith("allocscope.")}
    for name in own:
        del sys.modules[name]
    before = set(sys.modules)
    finder = None
    data = b""
    try:
        import ctypes
        memmove, u64 = ctypes.memmove, ctypes.c_uint64  # kept: ctypes leaves sys.modules
        state = ctypes.c_uint64.from_address(addr) if out is None else None
        if state is not None and state.value == 2:  # the caller gave up: free the buffer
            libc = ctypes.CDLL(None)
            libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
            libc.munmap(addr, size)
            return
        import json
        try:
            spec_class = type(sys.modules["sys"].__spec__)  # ModuleSpec, imported by nothing new

            class Finder:
                def find_spec(self, name, path=None, target=None):
                    if name not in sources:
                        return None
                    spec = spec_class(name, self, is_package=name in packages)
                    if name in packages:
                        spec.submodule_search_locations = []
                    return spec

                def create_module(self, spec):
                    return None

                def exec_module(self, module):
                    name = module.__name__
                    exec(compile(sources[name], "<allocscope>/" + name, "exec"), module.__dict__)

            finder = Finder()
            sys.meta_path.insert(0, finder)
            from allocscope.probe import inside
            answer = inside.run(trim)
        except BaseException as e:
            import traceback
            answer = {"error": "".join(traceback.format_exception_only(type(e), e)).strip()}
        data = json.dumps(answer, default=str).encode()
        if len(data) > RESULT_MAX:
            data = json.dumps({"error": "answer larger than the buffer"}).encode()
    except BaseException:
        data = b""  # never raise into the target's main thread
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            del sys.modules[name]
        sys.modules.update(own)
    if data and out is not None:  # answered only once everything is as it was
        with open(out + "/answer.tmp", "wb") as f:
            f.write(data)
        os.rename(out + "/answer.tmp", out + "/answer.json")
        if os.path.exists(out + "/abandoned"):
            _allocscope_tidy(out)
    elif data:
        memmove(addr + 16, data, len(data))
        u64.from_address(addr + 8).value = len(data)
        u64.from_address(addr).value = 1
"""


_TIDY = """
def _allocscope_tidy(out):
    import os
    for name in ("answer.json", "answer.tmp", "abandoned", "probe.py"):
        try:
            os.unlink(out + "/" + name)
        except OSError:
            pass
    try:
        os.rmdir(out)
    except OSError:
        pass
"""


# The probe's imports outside allocscope.probe (tests/unit/test_attach_payload.py checks the
# payload answers, so a new import here fails there first).
LEAVES = ("errors", "exitcodes")


def sources() -> tuple[dict[str, str], set[str]]:
    """Module name -> source for allocscope and allocscope.probe; and the package names."""
    found = {"allocscope": (PACKAGE / "__init__.py").read_text()}
    for leaf in LEAVES:  # top-level modules the probe imports
        found[f"allocscope.{leaf}"] = (PACKAGE / f"{leaf}.py").read_text()
    for path in sorted((PACKAGE / "probe").glob("*.py")):
        name = "allocscope.probe" if path.stem == "__init__" else f"allocscope.probe.{path.stem}"
        found[name] = path.read_text()
    return found, {"allocscope", "allocscope.probe"}


def line(addr: int, size: int, trim: bool) -> bytes:
    """The NUL-terminated statement PyRun_SimpleString runs in the target."""
    return f"exec({_boot(f'{addr}, {size}', trim, None)!r}, {{}})".encode() + b"\0"


def script(out: str, trim: bool) -> str:
    """The file sys.remote_exec runs in the target; it answers in the directory ``out``
    (as the target sees it) and removes the file itself."""
    return f"exec({_boot('0, 0', trim, out)!r}, {{}})\n"


def _boot(buffer: str, trim: bool, out: str | None) -> str:
    modules, packages = sources()
    return (
        _BOOT.replace("RESULT_MAX", str(RESULT_MAX))
        + _TIDY
        + f"\n_allocscope_attach({buffer}, {trim!r}, {modules!r}, {packages!r}, {out!r})\n"
    )
