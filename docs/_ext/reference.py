"""The reference pages' generated parts, written from the code at every docs build.

Sphinx calls :func:`setup`; on ``builder-inited`` every part below is rendered into
``docs/reference/_generated/`` (not committed), where the reference pages include it.
A part that cannot be generated fails the build: a reference that silently lost a table
would be worse than none.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "allocscope"
OUT = ROOT / "docs" / "reference" / "_generated"

# What each variable means, by hand; checked against the code below.
with open(Path(__file__).resolve().parent / "environment.toml", "rb") as _f:
    _DESCRIBED = tomllib.load(_f)
RUNTIME_VARIABLES: dict[str, str] = _DESCRIBED["runtime"]
BUILD_VARIABLES: dict[str, str] = _DESCRIBED["build"]
OTHER_VARIABLES: dict[str, str] = _DESCRIBED["other"]


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- exit codes: src/allocscope/exitcodes.py, names, values and their comments --------


def exit_codes() -> list[tuple[int, str, str]]:
    """(code, NAME, the comment beside it) for every constant in exitcodes.py."""
    path = SRC / "exitcodes.py"
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)):
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and isinstance(node.value.value, int):
            line = lines[node.lineno - 1]
            comment = line.partition("#")[2].strip()
            if not comment:  # a group's comment stands on the line above it
                above = lines[node.lineno - 2].strip()
                comment = above.lstrip("# ").strip() if above.startswith("#") else ""
            found.append(
                (node.value.value, target.id, comment or target.id.lower().replace("_", " "))
            )
    if not found:
        raise RuntimeError(f"no exit codes found in {path}")
    return sorted(found)


def exit_codes_md() -> str:
    rows = [(f"`{code}`", f"`{name}`", comment) for code, name, comment in exit_codes()]
    stopped = "stopped by signal N (SIGHUP 129, SIGTERM 143)"
    rows.append(("`128 + N`", "`stopped_by(signal)`", stopped))
    return _table(("code", "name in `allocscope.exitcodes`", "meaning (its comment)"), rows)


# --- metrics: the collector and the agent, asked for their families ----------------------

_FAMILIES = r"""
import json, sys
from prometheus_client.registry import Collector
from allocscope import forksafe
from allocscope.prometheus import AllocscopeCollector
from allocscope.inspect.node import NodeCollector
forksafe.after_fork()  # a restore makes the restores counter appear, as in a worker
out = []
for source, collector in (("collector", AllocscopeCollector()), ("agent", NodeCollector(top=3))):
    for family in collector.collect():
        labels = set(getattr(family, "_labelnames", ()) or ())
        for sample in family.samples:
            labels |= set(sample.labels)
        out.append({"source": source, "name": family.name, "type": family.type,
                    "help": family.documentation, "labels": sorted(labels)})
json.dump(out, sys.stdout)
"""


def _jemalloc() -> str | None:
    sys.path.insert(0, str(ROOT / "src"))
    from allocscope import libraries

    return libraries.find("jemalloc")


def metric_families() -> list[dict[str, Any]]:
    """Every family the collector and the agent yield, under glibc and under jemalloc.

    Each run is a fresh interpreter (the allocator is chosen at exec); the union is the
    reference, since the jemalloc series appear only where jemalloc serves malloc.
    """
    runs: list[dict[str, str]] = [{}]
    jemalloc = _jemalloc()
    if jemalloc is None:
        raise RuntimeError("libjemalloc is not installed: its series cannot be listed")
    runs.append({"LD_PRELOAD": jemalloc, "MALLOC_CONF": "background_thread:true"})
    families: dict[tuple[str, str], dict[str, Any]] = {}
    for extra in runs:
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
        env.update(extra)
        done = subprocess.run(
            [sys.executable, "-c", _FAMILIES], env=env, capture_output=True, text=True, check=True
        )
        for family in json.loads(done.stdout):
            key = (family["source"], family["name"])
            known = families.setdefault(key, family)
            known["labels"] = sorted(set(known["labels"]) | set(family["labels"]))
    return list(families.values())


def _exposed_name(family: dict[str, Any]) -> str:
    suffix = {"counter": "_total", "info": "_info"}.get(family["type"], "")
    return family["name"] + suffix


def metrics_md(source: str) -> str:
    """One entry per series: its name, type and labels, then its help text (a list reads
    better than a table whose help column runs off the page)."""
    entries = []
    for f in sorted(metric_families(), key=_exposed_name):
        if f["source"] != source:
            continue
        labels = ", ".join(f"`{label}`" for label in f["labels"]) or "no labels"
        entries.append(f"`{_exposed_name(f)}` ({f['type']}; {labels})\n: {f['help']}\n")
    if not entries:
        raise RuntimeError(f"the {source} yielded no metric family")
    return "\n".join(entries)


# --- environment variables: found in the code, described in environment.py --------------

_OURS = re.compile(r"\bALLOCSCOPE_[A-Z0-9]+(?:_[A-Z0-9]+)*\b")


def _names_in(paths: list[Path]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in paths:
        for name in _OURS.findall(path.read_text(errors="replace")):
            if name in ("ALLOCSCOPE_EXPECT",):  # a prefix in a comment, not a variable
                continue
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def _files(*tops: str, suffixes: tuple[str, ...] = (".py", ".sh", "")) -> list[Path]:
    out = []
    for top in tops:
        base = ROOT / top
        candidates = [base] if base.is_file() else sorted(base.rglob("*"))
        out += [p for p in candidates if p.is_file() and p.suffix in suffixes]
    return out


def environment_md() -> str:
    runtime = _names_in(_files("src"))
    build = _names_in(_files("container", "scripts", "Makefile", "tests", ".ci"))
    for name in runtime:
        build.pop(name, None)
    problems = []
    for found, described, kind in (
        (runtime, RUNTIME_VARIABLES, "read by src/"),
        (build, BUILD_VARIABLES, "read by the build and test scripts"),
    ):
        problems += [f"{n} ({kind}) has no description" for n in sorted(found.keys() - described)]
        problems += [f"{n} is described but not {kind}" for n in sorted(described.keys() - found)]
    src_text = "".join(p.read_text(errors="replace") for p in _files("src"))
    problems += [
        f"{n} is described but not named in src/" for n in OTHER_VARIABLES if n not in src_text
    ]
    if problems:
        raise RuntimeError("docs/_ext/environment.toml is out of date: " + "; ".join(problems))

    def rows(found: dict[str, set[str]], described: dict[str, str]) -> list[tuple[str, ...]]:
        return [
            (f"`{n}`", described[n], ", ".join(f"`{p}`" for p in sorted(found[n])))
            for n in sorted(found)
        ]

    other = [(f"`{n}`", text) for n, text in sorted(OTHER_VARIABLES.items())]
    return "\n".join(
        [
            "## allocscope's own variables\n",
            _table(("variable", "meaning", "read in"), rows(runtime, RUNTIME_VARIABLES)),
            "## Variables of the build, the image scripts and the tests\n",
            _table(("variable", "meaning", "read in"), rows(build, BUILD_VARIABLES)),
            "## Other variables allocscope reads or sets\n",
            _table(("variable", "what allocscope does with it"), other),
        ]
    )


# --- schemas: `allocscope info --schema` and the results document -----------------------


def info_schema() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "allocscope", "info", "--schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout


def schemas_md() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from allocscope.bench import evidence, record, results
    from allocscope.bench.results import header, search

    def rows(classes: tuple[tuple[type, str], ...]) -> list[tuple[str, str]]:
        return [
            (f"`{prefix}{f.name}`", f"`{f.type}`")  # annotations as written: not evaluated
            for cls, prefix in classes
            for f in dataclasses.fields(cls)
        ]

    run_rows = rows(
        (
            (record.RunRecord, ""),
            (record.Mark, "marks[]."),
            (record.Proof, "proof."),
            (record.Noise, "noise."),
            (evidence.Evidence, "evidence."),
            (evidence.TreeTrace, "evidence.tree."),
            (evidence.ProcessTrace, "evidence.tree.processes[]."),
            (evidence.ProcessProof, "evidence.processes[]."),
            (evidence.Inside, "evidence.inside[]."),
            (evidence.MallocConfKey, "evidence.inside[].malloc_conf[]."),
            (evidence.LoadSummary, "evidence.load."),
            (evidence.Fit, "evidence.growth.mib_per_10k_requests (and mib_per_hour)."),
            (evidence.Trims, "evidence.trims."),
            (evidence.TrimEvent, "evidence.trims.events[]."),
            (evidence.ExitHeap, "evidence.exit_heaps[]."),
            (evidence.Escaped, "evidence.escaped[]."),
            (evidence.Stop, "evidence.stop."),
        )
    )
    header_rows = rows(
        (
            (header.Host, "host."),
            (header.Config, "config."),
            (header.VariantInfo, "variants[]."),
            (header.Session, "session."),
        )
    )
    tune = "session.tune."
    search_rows = rows(
        (
            (search.Search, tune),
            (search.Sizing, f"{tune}schedule."),
            (search.Round, f"{tune}rounds[]."),
            (search.Fate, f"{tune}candidates[]."),
            (search.Ratio, f"{tune}candidates[].ratios.FIGURE."),
            (search.Decided, f"{tune}decision."),
            (search.Recommended, f"{tune}decision.recommendation."),
            (search.RunnerUp, f"{tune}decision.recommendation.runner_up."),
            (search.TuneConfig, "config.tune."),
        )
    )
    metric_rows = [(f"`{k}`", v) for k, v in results.METRICS.items()]
    history = textwrap.dedent((results.__doc__ or "").split("\n\n", 1)[1]).strip()
    return "\n".join(
        [
            "## The snapshot: `allocscope info --schema`\n",
            "The output of `allocscope info --schema`, run when these pages were built:\n",
            "```text\n" + info_schema() + "```\n",
            f"## The results document: `{results.SCHEMA}`, version {results.VERSION}\n",
            "From the docstring of `allocscope.bench.results`:\n",
            history + "\n",
            "### Each run (`runs[]`): `allocscope.bench.record.RunRecord`\n",
            _table(("JSON path", "type"), run_rows),
            "### The header: `allocscope.bench.results.header`\n",
            _table(("JSON path", "type"), header_rows),
            "### A tune's search (`session.tune`): `allocscope.bench.results.search`\n",
            "`rounds[].number` is written `round`; a ranking entry is "
            "`{variant, FIGURE: ratio}`.\n",
            _table(("JSON path", "type"), search_rows),
            "### Metric keys of a run's `metrics` (`allocscope.bench.results.METRICS`)\n",
            _table(("key", "meaning"), metric_rows),
        ]
    )


PARTS = {
    "exit-codes.md": exit_codes_md,
    "metrics-collector.md": lambda: metrics_md("collector"),
    "metrics-agent.md": lambda: metrics_md("agent"),
    "environment.md": environment_md,
    "schemas.md": schemas_md,
}


def generate(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in PARTS.items():
        path = out / name
        text = "<!-- generated by docs/_ext/reference.py at build time: do not edit -->\n\n"
        path.write_text(text + render())
        written.append(path)
    return written


# Sections whose index lists its pages in a chosen order; a page added to the folder and
# not listed yet (a new feature's guide) is appended to the index's toctree, so it is
# always reachable from the home page in two clicks.
SECTIONS = ("how-to", "explanation")


def complete_toctree(docname: str, text: str, pages: list[str]) -> str:
    """The index's text with every page of its folder in its first toctree."""
    listed = set(re.findall(r"^([\w./-]+)\s*$", text, re.M))
    missing = [p for p in sorted(pages) if p not in listed and p != "index"]
    if not missing:
        return text
    start = text.index("```{toctree}")
    end = text.index("\n```", start + 3)
    return text[:end] + "\n" + "\n".join(missing) + text[end:]


_NOT_RUN = re.compile(r"^([ \t]*)<!--\s*example:\s*not-run\s+(.*?)\s*-->[ \t]*$", re.M | re.S)


def show_not_run(text: str) -> str:
    """Say on the page, above an example the tests do not run, why they do not."""
    return _NOT_RUN.sub(
        lambda m: f"{m[1]}*Recorded output, not re-run by the docs tests: {m[2].rstrip('.')}.*",
        text,
    )


def _on_source_read(app: Any, docname: str, source: list[str]) -> None:
    source[0] = show_not_run(source[0])
    section, _, name = docname.partition("/")
    if section in SECTIONS and name == "index":
        folder = Path(app.srcdir) / section
        pages = [p.stem for p in folder.glob("*.md")]
        source[0] = complete_toctree(docname, source[0], pages)


def _always_reread(
    app: Any, env: Any, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """The section indexes depend on their folder's files, not only on their own text."""
    return [f"{section}/index" for section in SECTIONS]


def _generate(app: Any) -> None:
    from sphinx.errors import ExtensionError

    try:
        generate()
    except (RuntimeError, subprocess.CalledProcessError) as e:  # said in one line, not a log
        detail = getattr(e, "stderr", None) or ""
        raise ExtensionError(f"the reference cannot be generated: {e} {detail}".strip()) from e


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _generate)
    app.connect("source-read", _on_source_read)
    app.connect("env-get-outdated", _always_reread)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    for written in generate():
        print(written)
