"""Activation: audiences, journeys, governance and action commands, as pure functions.

The Faust runtime (a later round) is a thin loop around :mod:`streams.activation.engine`.
"""
