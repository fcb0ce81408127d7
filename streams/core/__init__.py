"""Pure stream logic (no Kafka, no Faust): contract checks, dead letters, dedup, identity,
profiles. Agents call these; unit tests exercise them without a broker."""
