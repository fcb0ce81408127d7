"""A Faust codec for Avro in the Confluent wire format.

Faust calls codecs synchronously from its stream machinery, so the codec holds
a ready :class:`~streams.serde.AvroSerde`; the encoder (which needs the
registry to know the schema id) is resolved on first use and cached.
"""

from __future__ import annotations

from typing import Any

from faust.serializers.codecs import Codec

from streams.serde import AvroSerde, Encoder


class ConfluentAvroCodec(Codec):
    """Encodes ``type_name`` records for ``subject``; decodes any framed record."""

    def __init__(self, serde: AvroSerde, subject: str, type_name: str, **kwargs: Any) -> None:
        super().__init__(serde=serde, subject=subject, type_name=type_name, **kwargs)
        self._serde = serde
        self._subject = subject
        self._type_name = type_name
        self._encoder: Encoder | None = None

    def _dumps(self, obj: Any) -> bytes:
        if self._encoder is None:
            self._encoder = self._serde.encoder(self._subject, self._type_name)
        return self._encoder(obj)

    def _loads(self, s: bytes) -> Any:
        return self._serde.decode(s)[1]
