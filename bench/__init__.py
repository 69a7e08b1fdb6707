"""Benchmarks: figures taken as ratios against standard tools, in one run on one machine."""
