"""Measure allocator variants on any kind of work, and prove what each run ran on.

The flow, one way: :mod:`~allocscope.bench.plan` (what to measure, checked once) ->
:mod:`~allocscope.bench.session` (the one loop: seeded order, repeats, warm-ups, noise,
signals, saves) -> :mod:`~allocscope.bench.kinds` (what differs per kind of work:
``kinds/workload/`` runs built-in workloads and ``module:function`` in our own worker
children; ``kinds/process/`` runs a user's command or service and watches its process
tree) -> :mod:`~allocscope.bench.record` (one typed, checked record per run) ->
:mod:`~allocscope.bench.results` (the versioned document the reports render).

Beside the flow: :mod:`~allocscope.bench.api` is the Python face (``allocscope.compare``);
:mod:`~allocscope.bench.variants` and :mod:`~allocscope.bench.workloads` say what runs;
:mod:`~allocscope.bench.analysis` says what the numbers mean (``stats``: is a difference
real; ``noise``: what else the machine did); :mod:`~allocscope.bench.orphans` finds what
escaped a run; :mod:`~allocscope.bench.demo` is the one-process benchmark behind
``bench_alloc.py``.
"""
