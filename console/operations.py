"""What the console changes, behind one interface (the pages call it from a worker
thread; tests give a fake): re-driving dead letters and enabling a destination. Undoing
a merge goes through the workers' API instead (console/worker_api.py)."""

from __future__ import annotations

from typing import Protocol

from console.deadletters import (
    DELIVERY,
    STREAM,
    Redriven,
    read_selected,
    redrive,
    redrive_delivery,
)
from streams.delivery.control import write_control
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import DELIVERY_CONTROL

MAX_REDRIVES = 3  # as scripts/deadletters: a record failing again stops after three


class Operations(Protocol):
    def redrive(self, kind: str, offsets: list[int]) -> Redriven: ...

    def enable(self, destination: str, by: str) -> None: ...


class KafkaOperations:
    def __init__(self, settings: Settings, serde: AvroSerde) -> None:
        self._settings, self._serde = settings, serde

    def redrive(self, kind: str, offsets: list[int]) -> Redriven:
        letters = read_selected(self._settings, self._serde, kind, offsets)
        if kind == STREAM:
            return redrive(self._settings, letters, MAX_REDRIVES)
        if kind == DELIVERY:
            return redrive_delivery(self._settings, letters, MAX_REDRIVES)
        raise ValueError(f"unknown dead-letter kind {kind!r}")

    def enable(self, destination: str, by: str) -> None:
        write_control(self._settings, self._settings.topic(DELIVERY_CONTROL), destination,
                      False, "enabled from the console", by)
