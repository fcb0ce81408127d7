"""Benchmarks (not timed tests): run through the Makefile's bench-* targets."""
