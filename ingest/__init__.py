"""The HTTP ingestion gateway: validates events, authenticates senders, writes to Kafka.

Run with ``python -m ingest``; configuration comes from :class:`streams.settings.Settings`.
"""
