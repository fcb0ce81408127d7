"""API keys as the gateway and the workers check them: the same key table, filled by a
reader of the same compacted key topic (ingest/keystore.py), so a key created or
revoked with ``scripts/apikeys`` counts here within seconds too."""

from __future__ import annotations

from ingest.auth import KeyRecord, KeyTable, Principal
from ingest.errors import AuthError
from ingest.keystore import KeyTopicReader
from streams.settings import Settings


class Keys:
    """The key table and its reader (None in tests, which fill the table directly)."""

    def __init__(self, table: KeyTable, reader: KeyTopicReader | None = None) -> None:
        self.table, self.reader = table, reader

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        table = KeyTable(settings.api_key_pepper.get_secret_value())
        return cls(table, KeyTopicReader(settings, table))

    def loaded(self) -> bool:
        return self.reader is None or self.reader.loaded.is_set()

    def principal(self, key: str) -> Principal | None:
        """Who ``key`` is, or None when it is unknown or revoked."""
        try:
            return self.table.authenticate(key)
        except AuthError:
            return None

    def name_of(self, key_id: str) -> str:
        record: KeyRecord | None = self.table.get(key_id)
        return (record.name if record and record.name else key_id)

    def start(self) -> None:
        if self.reader is not None:
            self.reader.start()

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.stop()
