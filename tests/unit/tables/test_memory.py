"""The stores share one memory budget; restores take turns (no broker: local RocksDB)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from rocksdict import Rdict

import tables.memory as memory
from streams.settings import Settings


def test_every_store_draws_on_the_one_budget(tmp_path: Path) -> None:
    dbs = [Rdict(str(tmp_path / f"db{i}"), memory.store_options()) for i in range(3)]
    try:
        for i, db in enumerate(dbs):
            db.put(b"k", b"v" * 1000)
            assert db.get(b"k") == b"v" * 1000, i
        assert len(memory._shared) == 1  # one cache and one memtable manager for all
        assert memory._shared[0][1].get_usage() > 0  # the stores' memtables count there
    finally:
        for db in dbs:
            db.close()


def test_restores_take_turns(settings_factory: Callable[..., Settings]) -> None:
    memory._restore_slots.clear()
    slots = memory.restoring(settings_factory(worker_restore_concurrency=2))
    assert slots is memory.restoring(settings_factory())  # one per worker process
    running, most = [0], [0]
    lock = threading.Lock()

    def restore() -> None:
        with slots:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            threading.Event().wait(0.05)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=restore) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 2
    memory._restore_slots.clear()


def test_heap_tuning_is_harmless_to_call() -> None:
    memory.limit_heap_arenas()
    memory.give_back_heap()
