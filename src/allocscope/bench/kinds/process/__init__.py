"""A user's command or service: one process tree at a time, started under a variant and
watched from outside.

The same kind to the session loop (:mod:`~allocscope.bench.kinds.process.kind`); they
differ in one module each:
:mod:`~allocscope.bench.kinds.process.command` (run it, measure it, judge it) and
:mod:`~allocscope.bench.kinds.process.service` (start it, wait until it answers, load it,
let it idle, stop it, with :mod:`~allocscope.bench.kinds.process.load` and
:mod:`~allocscope.bench.kinds.process.listening`). Shared by both:
:mod:`~allocscope.bench.kinds.process.watch` (the environment, the process group, the
samples, stopping), :mod:`~allocscope.bench.kinds.process.tree` (RSS/PSS/CPU of the whole
tree from /proc), :mod:`~allocscope.bench.kinds.process.proof` (which allocator serves malloc
in each process), :mod:`~allocscope.bench.kinds.process.kept` (bounded output) and
:mod:`~allocscope.bench.kinds.process.inject` (the hook inside each Python process).
Each run has its own noise window; the results are saved after each run (and during a long
load).

Nothing is imported here: the guard runs as ``python -m``.
"""
