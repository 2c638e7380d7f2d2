"""Benchmarks that prove their allocator: variants, workloads, the child worker, the runner.

Data flows one way: :mod:`runner` starts :mod:`worker` children under each variant,
samples their RSS from outside, and :mod:`results` writes the one versioned JSON document
that the reports render.
"""
