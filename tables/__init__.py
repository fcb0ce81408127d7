"""Worker state (RocksDB via rocksdict, with Kafka changelogs), one domain per module."""
