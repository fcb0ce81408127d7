"""Wiring of the activation platform: settings, topics, schemas, serialization, the Faust app."""
