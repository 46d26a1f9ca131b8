"""Benchmarks of retina-lightning: data pipeline, inference speed, memory scaling, accuracy.

Run them as scripts (``python benchmarks/bench_data.py --quick``, ``make bench``); see
``benchmarks/README.md``.
"""
