"""Built-in workloads and ``module:function``, in our own worker children:
:mod:`~allocscope.bench.kinds.workload.kind` (what the session loop drives),
:mod:`~allocscope.bench.kinds.workload.runner` (the parent: one event loop starts the
children, reads their events and samples their RSS; one child settles while the next
works) and :mod:`~allocscope.bench.kinds.workload.worker` (the child).

Nothing is imported here: the worker runs as ``python -m``, and a package that imported
it (through the runner) would run it twice and load the parent's modules in every child.
"""
