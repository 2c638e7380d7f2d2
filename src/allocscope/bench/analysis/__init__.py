"""What the numbers mean: :mod:`~allocscope.bench.analysis.stats` (is a difference real: bootstrap
intervals, a rank test and a verdict) and :mod:`~allocscope.bench.analysis.noise` (what else the
machine did while a run was timed)."""
