"""Faust agents, one domain per module; each keeps its loop thin and calls pure functions."""
