"""The stages' own work, one input record at a time: pure modules over a ``Store``
(streams/core/pipeline.py) that write what a record causes into an :class:`Outputs`.

- :mod:`streams.core.stages.identity`: dedup and identity resolution, commands;
- :mod:`streams.core.stages.profiles`: profiles, merges, undo, timers, activation.

The agents (agents/identity.py, agents/profiles.py) wire Kafka to them: decode, one
transaction per record, sending what the outputs hold, metrics once committed. The
sandbox (streams/core/sandbox.py) drives the very same modules from in-memory queues,
for the unit tests and the what-if replay.
"""
