"""MiniML benchmark suite: ``python -m bench.run`` (``make bench``); see bench/run.py."""
