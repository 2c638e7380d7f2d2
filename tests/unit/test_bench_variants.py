"""Variants: built-ins, command-line specs, TOML files, discovery and its absence."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocscope.bench import variants
from allocscope.bench.kinds.workload.runner import child_environ, stderr_problems
from allocscope.bench.variants import TUNED_CONF, Libraries, VariantError, parse_spec, select


def test_default_set_is_the_six_of_the_issue() -> None:
    names = [v.name for v in select()]
    assert names == [
        "glibc", "glibc-arena2", "jemalloc-demo", "jemalloc-tuned", "tcmalloc", "mimalloc"
    ]  # fmt: skip
    by = {v.name: v for v in select()}
    assert by["glibc"].library is None and by["glibc"].environ() == {}
    assert by["glibc-arena2"].environ() == {"MALLOC_ARENA_MAX": "2"}
    tuned = by["jemalloc-tuned"]
    assert tuned.allocator == "jemalloc" and tuned.available
    assert tuned.environ() == {"MALLOC_CONF": TUNED_CONF, "LD_PRELOAD": tuned.library}
    assert "metadata_thp:auto" in by["jemalloc-demo"].environ()["MALLOC_CONF"]


def test_spec_keeps_the_commas_of_malloc_conf(jemalloc: str) -> None:
    v = parse_spec("name=je1,lib=jemalloc,env=MALLOC_CONF=narenas:1,tcache:false,env=X=1")
    assert (v.name, v.allocator, v.library) == ("je1", "jemalloc", jemalloc)
    assert v.environ() == {
        "MALLOC_CONF": "narenas:1,tcache:false",
        "X": "1",
        "LD_PRELOAD": jemalloc,
    }


def test_spec_with_a_path_infers_the_allocator(mimalloc: str) -> None:
    v = parse_spec(f"name=mi,lib={mimalloc}")
    assert v.allocator == "mimalloc" and v.library == mimalloc


def test_spec_without_lib_is_glibc() -> None:
    v = parse_spec("name=arena1,env=MALLOC_ARENA_MAX=1")
    assert v.allocator == "glibc" and v.library is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch", "unknown variant 'nosuch'"),
        ("lib=jemalloc", "name= is required"),
        ("name=x,colour=red", "unknown key 'colour'"),
        ("name=x,env=NOVALUE", "env= needs KEY=VALUE"),
        ("name=x,env=LD_PRELOAD=/x.so", "set the library with lib="),
        ("name=x,lib=hoard", "neither a path nor one of"),
        ("name=bad name", "use letters, digits"),
        ("name=x,lib=/no/such/libjemalloc.so.2", "no such file"),
        ("name=x,lib=jemalloc,allocator=hoard", "cannot tell which allocator"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(VariantError, match=message):
        parse_spec(spec)


def test_a_non_elf_library_is_refused_up_front(tmp_path: Path) -> None:
    fake = tmp_path / "libjemalloc.so.2"
    fake.write_text("not a library\n")
    with pytest.raises(VariantError, match="not an ELF file"):
        parse_spec(f"name=x,lib={fake}")


def test_an_absent_library_makes_the_variant_unavailable_not_glibc(tmp_path: Path) -> None:
    v = variants.builtin("tcmalloc", Libraries(dirs=[str(tmp_path)]))
    assert not v.available and v.library is None
    assert "libtcmalloc_minimal.so.4" in (v.unavailable or "") and str(tmp_path) in (
        v.unavailable or ""
    )
    assert v.environ() == {}  # never run: the runner only plans available variants


def test_given_library_overrides_discovery(jemalloc: str, tmp_path: Path) -> None:
    libs = Libraries({"jemalloc": jemalloc}, dirs=[str(tmp_path)])
    assert variants.builtin("jemalloc-tuned", libs).library == jemalloc
    with pytest.raises(VariantError, match="unknown allocator"):
        Libraries({"hoard": jemalloc})


def test_toml_variants(tmp_path: Path, jemalloc: str) -> None:
    path = tmp_path / "v.toml"
    path.write_text(
        '[[variant]]\nname = "je-narenas1"\nlib = "jemalloc"\n'
        'env = { MALLOC_CONF = "narenas:1" }\ndescription = "one arena"\n'
        '[[variant]]\nname = "plain"\n'
    )
    vs = select(files=[str(path)])
    assert [(v.name, v.allocator) for v in vs] == [("je-narenas1", "jemalloc"), ("plain", "glibc")]
    assert vs[0].environ() == {"MALLOC_CONF": "narenas:1", "LD_PRELOAD": jemalloc}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[variant]\n", "not valid TOML"),
        ("x = 1\n", r"one or more \[\[variant\]\] tables"),
        ('[[variant]]\nlib = "jemalloc"\n', "name is required"),
        ('[[variant]]\nname = "a"\nshape = "round"\n', "unknown keys shape"),
        ('[[variant]]\nname = "a"\nenv = { A = 1 }\n', "env must be a table of strings"),
    ],
)
def test_bad_toml(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "v.toml"
    path.write_text(text)
    with pytest.raises(VariantError, match=message):
        select(files=[str(path)])


def test_missing_toml_file(tmp_path: Path) -> None:
    with pytest.raises(VariantError, match="No such file"):
        select(files=[str(tmp_path / "none.toml")])


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(VariantError, match="given twice"):
        select(["glibc", "name=glibc"])


def test_pythonmalloc_adds_a_twin_per_variant() -> None:
    vs = select(["glibc", "jemalloc-tuned"], pythonmalloc=True)
    assert [v.name for v in vs] == [
        "glibc", "glibc+pythonmalloc", "jemalloc-tuned", "jemalloc-tuned+pythonmalloc"
    ]  # fmt: skip
    assert vs[1].environ() == {"PYTHONMALLOC": "malloc"}
    assert vs[3].environ()["MALLOC_CONF"] == TUNED_CONF


def test_child_environment_is_an_allow_list_plus_the_variant(jemalloc: str) -> None:
    parent = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LD_PRELOAD": jemalloc,
        "MALLOC_CONF": "narenas:64",
        "PYTHONMALLOC": "debug",
        "SECRET_TOKEN": "x",
    }
    env = child_environ(select(["glibc-arena2"])[0], parent)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "PYTHONHASHSEED": "0",
        "MALLOC_ARENA_MAX": "2",
    }


def test_stderr_problems_name_the_loader_and_jemalloc() -> None:
    text = (
        "ERROR: ld.so: object '/tmp/x.so' from LD_PRELOAD cannot be preloaded "
        "(invalid ELF header): ignored.\n"
        "<jemalloc>: Invalid conf pair: bogus:1\n"
        "<jemalloc>: Invalid conf value: narenas:many\n"
        "all fine here\n"
    )
    problems = stderr_problems(text)
    assert len(problems) == 3
    assert problems[0].startswith("the loader refused to preload /tmp/x.so")
    assert "Invalid conf pair: bogus:1" in problems[1]
    assert stderr_problems("nothing to see\n") == []
