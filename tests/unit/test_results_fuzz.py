"""The results reader against anything: it returns results that render, or says why not.

Property: for any text, :func:`results.parse` either returns a document whose counted runs
hold only finite, non-negative figures and whose table renders, or raises ResultsError (the
commands' exit 3). Never another exception, never an impossible number in a table.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocscope.bench.results import ResultsError, parse
from allocscope.report import table
from tests.unit.test_bench_results import sample

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
VALID = sample().to_dict()


def _paths(doc: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*here, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*here, i))
    return out


PATHS = _paths(VALID)


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(doc[head], tuple(rest), value)
    return copy


def _holds(text: str) -> None:
    try:
        results = parse(text)
    except ResultsError as e:
        assert str(e) and "\n" not in str(e)  # one line
        return
    for run in results.runs:
        if run.counts:
            assert all(math.isfinite(v) and v >= 0 for v in run.metrics.values())
    table.markdown(results)
    table.text(results)


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(JSON)
def test_any_json_document(doc: Any) -> None:
    _holds(json.dumps(doc))


@FUZZ
@given(st.sampled_from(PATHS), JSON)
def test_a_valid_document_with_one_value_replaced(path: tuple[Any, ...], value: Any) -> None:
    _holds(json.dumps(_replace(VALID, path, value)))


@FUZZ
@given(st.sampled_from(PATHS))
def test_a_valid_document_with_one_key_dropped(path: tuple[Any, ...]) -> None:
    if not path:
        return
    *parent, last = path
    doc = json.loads(json.dumps(VALID))
    holder = doc
    for key in parent:
        holder = holder[key]
    del holder[last]
    _holds(json.dumps(doc))


@FUZZ
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    _holds(text)


def test_truncated_at_every_length() -> None:
    text = json.dumps(VALID)
    for end in range(0, len(text), max(1, len(text) // 300)):
        _holds(text[:end])
