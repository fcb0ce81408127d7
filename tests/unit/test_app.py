"""The Faust app fails fast when a stage's module does not import."""

from __future__ import annotations

import pytest

from streams.app import app
from streams.errors import StartupError


def test_a_module_that_does_not_import_stops_the_worker() -> None:
    with pytest.raises(StartupError, match="agents.broken failed to import"):
        try:
            raise ImportError("cannot import name 'X'")
        except ImportError:  # where Faust's autodiscovery calls its error hook
            app._on_autodiscovery_error("agents.broken")
