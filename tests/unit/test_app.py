"""The Faust app: fails fast when a stage's module does not import; wired explicitly."""

from __future__ import annotations

import pytest

from agents.auth import KeyCheck
from streams import faust_patches
from streams.app import app
from streams.errors import StartupError


def test_a_module_that_does_not_import_stops_the_worker() -> None:
    with pytest.raises(StartupError, match="agents.broken failed to import"):
        try:
            raise ImportError("cannot import name 'X'")
        except ImportError:  # where Faust's autodiscovery calls its error hook
            app._on_autodiscovery_error("agents.broken")


def test_create_app_applies_every_patch_and_installs_the_key_check() -> None:
    for patch in faust_patches.PATCHES:
        installed = patch.owner.__dict__[patch.attribute]
        assert patch.name in faust_patches._names(installed)
    assert isinstance(app.gate.keys, KeyCheck)  # not an import side effect of agents/
    assert len(app.conf.web_application_options["middlewares"]) == 1
    assert not (app.conf.web_tables_enabled or app.conf.web_router_enabled
                or app.conf.web_stats_enabled or app.conf.web_graph_enabled)
