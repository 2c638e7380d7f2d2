"""Reports render a results file and nothing else: tables (terminal, markdown) and charts.

Each reporter takes a :class:`~allocscope.bench.results.Results` and only renders, so an
old results file can be redrawn at any time without running anything again.
"""
