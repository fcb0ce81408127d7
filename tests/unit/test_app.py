"""The Faust app and the worker built on it: wired explicitly, nothing made at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agents.auth import KeyCheck
from agents.worker import build
from streams import faust_patches
from streams.settings import REPO_ROOT, load_settings


def test_importing_the_worker_modules_reads_no_settings_and_makes_no_app() -> None:
    """Settings that cannot load (a bad variable) do not stop an import: only
    :func:`agents.worker.build`, given settings, makes anything."""
    modules = ["streams.app", "agents.worker", "agents.api", "agents.screening",
               "agents.identity", "agents.profiles", "agents.activation", "agents.lag",
               "agents.owned", "tables.state"]
    code = ("import importlib, gc, faust\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "assert not [o for o in gc.get_objects() if isinstance(o, faust.App)]\n")
    env = {**os.environ, "ACTIVATION_PROFILE_PARTITIONS": "not-a-number"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_build_installs_every_stage_and_the_key_check(tmp_path: Path) -> None:
    settings = load_settings().model_copy(update={"data_dir": tmp_path, "app_id": "wired"})
    app = build(settings)
    for patch in faust_patches.PATCHES:
        installed = patch.owner.__dict__[patch.attribute]
        assert patch.name in faust_patches._names(installed)
    assert isinstance(app.gate.keys, KeyCheck)
    assert len(app.conf.web_application_options["middlewares"]) == 1
    assert not (app.conf.web_tables_enabled or app.conf.web_router_enabled
                or app.conf.web_stats_enabled or app.conf.web_graph_enabled)
    assert {agent.name.rsplit(".", 1)[-1] for agent in app.agents.values()} \
        >= {"identity", "profiles"}
    assert [s.__name__ for s in app._extra_services] == ["Screening"]


def test_two_workers_in_one_process_share_nothing(tmp_path: Path) -> None:
    base = load_settings()
    one = build(base.model_copy(update={"data_dir": tmp_path / "1", "app_id": "one"}))
    two = build(base.model_copy(update={"data_dir": tmp_path / "2", "app_id": "two"}))
    assert one is not two and one.gate is not two.gate
