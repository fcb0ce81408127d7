"""Faust tables (RocksDB via rocksdict), one domain per module."""
