"""tune's pure logic: space files, settings as compare specs, bounds, the halving schedule,
the race over fabricated run records, and the recommendation rules."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from allocscope.bench.record import RunRecord
from allocscope.bench.variants import Variant, parse_spec
from allocscope.tune import objective, recommend, search, setting, space

# ---- space files ---------------------------------------------------------------------


def test_a_space_file_narrows_to_the_knobs_it_names() -> None:
    sp = space.parse({"jemalloc": {"dirty_decay_ms": [0, 100], "narenas": ["default", 2]}})
    assert sp.allocators() == ["jemalloc"]
    assert [k.name for k in sp.knobs] == ["dirty_decay_ms", "narenas"]
    assert sp.of("jemalloc")[1].values == (None, 2)
    assert sp.size() == 4


def test_a_named_allocator_without_knobs_is_searched_at_its_defaults() -> None:
    sp = space.parse({"tcmalloc": {}, "python": {"PYTHONMALLOC": ["default", "malloc"]}})
    assert sp.allocators() == ["tcmalloc"]
    assert [s.name for s in setting.grid(sp)] == ["tcmalloc", "tcmalloc.pymalloc-off"]


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"jemalloc": {"dirty_decay_ms": ["fast"]}}, "'fast' is a str, expected int"),
        ({"jemalloc": {"background_thread": [1]}}, "expected bool"),
        ({"glibc": {"MALLOC_ARENA_MAX": [True]}}, "expected int"),
        ({"jemalloc": {"dirty_decay_ms": []}}, "no values to try"),
        ({"jemalloc": {"dirty_decay_ms": [1, 1]}}, "given twice"),
        ({"jemalloc": {"lg_whatever": [1, "x"]}}, "mixed types"),
        ({"zmalloc": {"x": [1]}}, "unknown section [zmalloc]"),
        ({"jemalloc": {"dirty_decay_ms": [{"a": 1}]}}, "is not a value"),
        ({}, "the space is empty"),
    ],
)
def test_a_bad_space_is_refused_naming_what_is_wrong(doc: dict[str, object], words: str) -> None:
    with pytest.raises(space.SpaceError) as e:
        space.parse(doc, "my.toml")
    assert words in str(e.value)
    assert e.value.exit_code == 3


def test_a_space_file_that_is_not_toml_is_refused(tmp_path: object) -> None:
    path = f"{tmp_path}/s.toml"
    with open(path, "w") as f:
        f.write("[jemalloc\n")
    with pytest.raises(space.SpaceError, match="not valid TOML"):
        space.load(path)


# ---- settings are compare's variants ---------------------------------------------------


def test_a_setting_is_a_spec_that_compare_parses_back_to_the_same_variables() -> None:
    s = setting.Setting(
        "jemalloc",
        (("dirty_decay_ms", 100), ("background_thread", True), ("PYTHONMALLOC", "malloc")),
    )
    v = parse_spec(s.spec())
    assert v.name == s.name == "jemalloc.dirty-100.bg-true.pymalloc-off"
    assert v.allocator == "jemalloc"
    assert dict(v.env) == {
        "MALLOC_CONF": "dirty_decay_ms:100,background_thread:true",
        "PYTHONMALLOC": "malloc",
    }


def test_glibc_tunables_join_into_one_variable_and_trim_becomes_compares_trim() -> None:
    s = setting.Setting(
        "glibc",
        (
            ("MALLOC_ARENA_MAX", 2),
            ("glibc.malloc.trim_threshold", 0),
            ("glibc.malloc.mmap_threshold", 65536),
            (space.TRIM, 5),
        ),
    )
    v = parse_spec(s.spec())
    assert dict(v.env) == {
        "MALLOC_ARENA_MAX": "2",
        "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0:glibc.malloc.mmap_threshold=65536",
    }
    assert v.trim_every == 5.0 and v.library is None


def test_the_sample_starts_with_the_built_ins_the_space_holds_and_skips_the_baseline() -> None:
    sp = space.default_space()
    base = setting.Setting("glibc", ())
    chosen = setting.sample(sp, 40, random.Random(3), skip=[base])
    names = [s.name for s in chosen]
    assert "glibc" not in names
    assert len(set(names)) == len(names) == 40
    # jemalloc-tuned's MALLOC_CONF, whatever the order of its pairs
    assert "jemalloc.dirty-100.muzzy-100.arenas-2.bg-true.retain-false" in names[:8]
    assert {s.allocator for s in chosen} == set(space.ALLOCATORS)


def test_the_sample_depends_on_the_seed_alone() -> None:
    sp = space.default_space()
    a = setting.sample(sp, 20, random.Random(7))
    b = setting.sample(sp, 20, random.Random(7))
    c = setting.sample(sp, 20, random.Random(8))
    assert a == b and a != c


# ---- objective and bounds --------------------------------------------------------------


def test_default_bounds_apply_where_the_target_has_the_figure() -> None:
    bounds = objective.parse_bounds(objective.DEFAULT_BOUNDS, "workload", given=False)
    assert [str(b) for b in bounds] == ["throughput>=0.95"]
    bounds = objective.parse_bounds(objective.DEFAULT_BOUNDS, "service", given=False)
    assert [str(b) for b in bounds] == ["throughput>=0.95", "p99<=1.1"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("p99<=1.2", "a workload has no such figure"),
        ("throughput>=1.1", "the baseline itself fails it"),
        ("retained<=0.8", "the baseline itself fails it"),
        ("throughput=>0.9", "expected FIGURE>=RATIO"),
        ("speed>=0.9", "unknown figure"),
    ],
)
def test_a_bound_that_cannot_hold_is_refused(text: str, words: str) -> None:
    with pytest.raises(objective.ObjectiveError) as e:
        objective.parse_bounds(text, "workload", given=True)
    assert words in str(e.value)


def test_throughput_from_cpu_time_is_the_inverse_ratio() -> None:
    fig = objective.figure("workload", "throughput")
    r = objective.ratio(fig, [2.0] * 6, [1.0] * 6, seed=1, workload="w", variant="v")
    assert r is not None and r.ratio == pytest.approx(0.5)
    assert r.verdict == "significant"


# ---- the schedule ----------------------------------------------------------------------


def test_the_schedule_keeps_a_third_each_round_and_counts_every_run() -> None:
    s = search.Schedule(12)
    assert s.sizes() == [12, 4, 2]
    # warm-up + (12+1)*1 + (4+1)*2 + (2+1)*4
    assert s.runs() == 1 + 13 + 10 + 12
    assert search.Schedule(1).runs() == 1 + 2 + 4 + 8


def test_fit_takes_the_largest_schedule_within_the_runs_and_none_below_the_smallest() -> None:
    assert search.fit(36, 100) == search.Schedule(12)
    assert search.fit(35, 100) == search.Schedule(11)
    assert search.fit(14, 100) is None
    assert search.fit(10_000, 5) == search.Schedule(5)


# ---- the race, over fabricated runs ----------------------------------------------------


def _variant(name: str) -> Variant:
    return Variant(name=name, allocator="glibc")


def _fake_engine(
    retained: dict[str, float],
    cpu: dict[str, float],
    crash: tuple[str, ...] = (),
    spread: float = 0.01,
) -> tuple[Callable[[list[tuple[Variant, int]]], list[RunRecord]], list[tuple[str, int]]]:
    order: list[tuple[str, int]] = []
    rng = random.Random(0)

    def measure(batch: list[tuple[Variant, int]]) -> list[RunRecord]:
        out = []
        for v, repeat in batch:
            order.append((v.name, repeat))
            ok = v.name not in crash
            noise = 1 + rng.uniform(-spread, spread)
            # MiB: a memory difference under compare's floor (2 MiB) is never significant
            retained_bytes = retained[v.name] * 2**20 * noise
            metrics = {"rss_retained": retained_bytes, "cpu_s": cpu[v.name] * noise}
            out.append(
                RunRecord(
                    variant=v.name,
                    workload="w",
                    repeat=repeat,
                    ok=ok,
                    failures=[] if ok else ["exited with status -11"],
                    metrics=metrics if ok else {},
                    marks=[],
                    timeline=[],
                    proof=None,
                    heap=None,
                    exit_code=0 if ok else -11,
                    stderr="" if ok else "Segmentation fault\n",
                    duration_s=1.0,
                    params={},
                )
            )
        return out

    return measure, order


def _race(names: list[str], seed: int = 5) -> search.Race:
    return search.Race(
        baseline=_variant("base"),
        candidates=[search.Candidate(_variant(n)) for n in names],
        objective=objective.figure("workload", "retained"),
        bounds=objective.parse_bounds("throughput>=0.95", "workload", given=True),
        seed=seed,
        workload="w",
    )


RETAINED = {
    "base": 100.0,
    "ok": 50.0,
    "good": 30.0,
    "better": 20.0,
    "slow": 10.0,
    "meh": 99.0,
    "crash": 1.0,
}
CPU = {"base": 1.0, "ok": 1.0, "good": 1.0, "better": 1.01, "slow": 1.5, "meh": 1.0, "crash": 1.0}


def test_the_race_keeps_the_best_within_bounds_and_recommends_it() -> None:
    measure, order = _fake_engine(RETAINED, CPU, crash=("crash",))
    race = _race(["meh", "good", "slow", "crash", "better"])
    search.run(race, search.Schedule(5), measure)
    by = {c.name: c for c in race.candidates}
    assert by["crash"].dropped is not None and "Segmentation fault" in by["crash"].dropped
    assert by["slow"].dropped is not None and "breaks throughput>=0.95" in by["slow"].dropped
    assert [c.name for c in race.finalists()] == ["better"]  # rounds of 5, 2, 1
    assert len(by["better"].counted()) == search.FINAL_RUNS
    assert len([r for r in race.base_runs if r.counts]) == search.FINAL_RUNS
    # the baseline ran once in every repeat, beside the survivors, in a shuffled order
    assert sorted(r for n, r in order if n == "base") == list(range(search.FINAL_RUNS + 1))
    firsts = [next(n for n, r in order if r == k) for k in range(1, search.FINAL_RUNS + 1)]
    assert len(set(firsts)) > 1
    settings = {n: setting.Setting("glibc", (("MALLOC_ARENA_MAX", 2),)) for n in RETAINED}
    decision = recommend.decide(race, settings)
    assert decision.recommendation is not None
    record = decision.record().recommendation
    assert record is not None and record.gains["retained"].verdict == "significant"


def test_the_same_seed_replays_the_same_order_and_a_resume_measures_nothing_again() -> None:
    measure, first = _fake_engine(RETAINED, CPU)
    race = search.run(_race(["meh", "good", "better"]), search.Schedule(3), measure)
    runs = [*race.base_runs, *(r for c in race.candidates for r in c.runs)]
    again, second = _fake_engine(RETAINED, CPU)
    search.run(_race(["meh", "good", "better"]), search.Schedule(3), again)
    assert first == second
    resumed, third = _fake_engine(RETAINED, CPU)
    race2 = search.run(_race(["meh", "good", "better"]), search.Schedule(3), resumed, known=runs)
    assert third == []
    assert [c.name for c in race2.finalists()] == [c.name for c in race.finalists()]


def test_nothing_is_recommended_when_no_finalist_differs_significantly() -> None:
    same = dict.fromkeys(RETAINED, 100.0)
    measure, _ = _fake_engine(same, CPU)
    race = search.run(_race(["meh", "good"]), search.Schedule(2), measure)
    decision = recommend.decide(race, {})
    assert decision.recommendation is None
    assert "differs significantly" in decision.reason
    assert decision.record().to_dict() == {"recommendation": None, "reason": decision.reason}


def test_max_runs_stops_the_race_with_its_reason_and_no_recommendation() -> None:
    measure, order = _fake_engine(RETAINED, CPU)
    race = search.run(_race(["meh", "good", "better"]), search.Schedule(3), measure, max_runs=11)
    assert race.stopped is not None and "--max-runs 11" in race.stopped
    assert len(order) <= 11
    assert recommend.decide(race, {}).recommendation is None


def test_the_snippets_carry_the_preload_the_settings_and_the_fork_hook() -> None:
    s = setting.Setting("jemalloc", (("dirty_decay_ms", 100), ("background_thread", True)))
    rec = recommend.Recommendation(s, "/usr/lib/libjemalloc.so.2", {}, None)
    text = recommend.snippets(rec, kind="service")
    assert 'ENV LD_PRELOAD="/usr/lib/libjemalloc.so.2"' in text
    assert 'ENV MALLOC_CONF="dirty_decay_ms:100,background_thread:true"' in text
    assert "  - name: MALLOC_CONF" in text
    assert "allocscope.gunicorn_conf" in text
    assert "allocscope verify --allocator jemalloc" in text
    assert f"-V '{s.spec()}'" in text
    arenas = setting.Setting("glibc", (("MALLOC_ARENA_MAX", 2),))
    plain = recommend.snippets(recommend.Recommendation(arenas, None, {}, None), kind="workload")
    assert "gunicorn" not in plain and "LD_PRELOAD" not in plain


def test_a_tight_budget_shrinks_the_later_rounds_but_keeps_the_final_one() -> None:
    measure, order = _fake_engine(RETAINED, CPU)
    names = ["meh", "good", "better", "ok", "slow", "crash"]
    # in full: a warm-up, 7 + 3*2 + 2*4 = 22 runs; 20 leave one candidate for rounds 2, 3
    race = search.run(_race(names), search.Schedule(6), measure, max_runs=20)
    assert race.stopped is None and len(order) == 20
    (final,) = race.finalists()
    assert len(final.counted()) == search.FINAL_RUNS
    assert any(c.dropped == "ranked below the survivors (budget)" for c in race.candidates)


def test_round_one_stops_at_its_share_of_the_budget_and_the_final_round_still_runs() -> None:
    # A clock that advances 1 s per measured run: 30 candidates sized for fast runs, but
    # the budget (40 s) lets round 1 take 20 s: it stops after two slices, baseline first.
    now = [0.0]
    inner, order = _fake_engine({**RETAINED, **{f"c{i}": 90.0 - i for i in range(30)}},
                                {**CPU, **{f"c{i}": 1.0 for i in range(30)}})  # fmt: skip

    def measure(batch: list[tuple[Variant, int]]) -> list[RunRecord]:
        now[0] += len(batch)
        return inner(batch)

    race = _race([f"c{i}" for i in range(30)])
    search.run(race, search.Schedule(30), measure, deadline=40.0, clock=lambda: now[0])
    first_round = [n for n, r in order if r == 1]
    assert first_round[0] == "base" and len(first_round) == 2 * search.CHUNK
    unmeasured = [c for c in race.candidates if not c.runs]
    assert unmeasured and all("not measured" in (c.dropped or "") for c in unmeasured)
    (final,) = race.finalists()  # the time left took one candidate to the end
    assert len(final.counted()) == search.FINAL_RUNS and now[0] <= 40.0


@pytest.mark.parametrize(("spread", "kept"), [(0.01, False), (0.30, True)])
def test_a_bound_is_broken_only_by_a_slowdown_compare_calls_significant(
    spread: float, kept: bool
) -> None:
    # 8 % more CPU time than the baseline: past throughput>=0.95 on the median. With 1 %
    # noise that is a real slowdown; with 30 % noise it is within noise of none.
    measure, _ = _fake_engine({"base": 100.0, "near": 50.0}, {"base": 1.0, "near": 1.08},
                              spread=spread)  # fmt: skip
    race = search.run(_race(["near"]), search.Schedule(1), measure)
    (near,) = race.candidates
    assert near.ratios["throughput"].ratio < 0.95
    assert (near.dropped is None) is kept, near.dropped
    if not kept:
        assert "breaks throughput>=0.95" in (near.dropped or "") and near.round_left == 3


def test_the_pareto_front_keeps_the_points_nothing_beats_on_both_figures() -> None:
    from allocscope.tune import pareto

    pts = [("a", 0.2, 0.8, True), ("b", 0.3, 1.4, True), ("c", 0.5, 1.0, False),
           ("d", 1.1, 1.5, False), ("e", 0.3, 1.2, False)]  # fmt: skip
    assert [p[0] for p in pareto.front(pts)] == ["a", "b", "d"]
