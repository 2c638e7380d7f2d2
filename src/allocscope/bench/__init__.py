"""Measure allocator variants on any kind of work, and prove what each run ran on.

The flow, one way: :mod:`plan` (what to measure, checked once) -> :mod:`session` (the
one loop: seeded order, repeats, warm-ups, noise, signals, saves) -> :mod:`kinds` (per
kind of work: :mod:`runner` and its :mod:`worker` children for built-in workloads and
``module:function``; :mod:`target`, :mod:`serve_target`, :mod:`watch`, :mod:`tree` and
:mod:`load` for a command or a service) -> :mod:`record` (one typed, checked record per
run) -> :mod:`results` (the versioned document the reports render). :mod:`api` is the
Python face (``allocscope.compare``); :mod:`variants` and :mod:`workloads` say what runs.
"""
