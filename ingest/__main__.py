"""``python -m ingest``: run one gateway process with settings from the environment."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from ingest.app import create_app
from ingest.logs import configure
from streams.errors import ConfigError
from streams.settings import load_settings


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure(settings.log_level)
    # We log each request ourselves; the registry client's per-call lines are noise.
    for noisy in ("aiohttp.access", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app = create_app(settings)
    web.run_app(app, host=settings.gateway_host, port=settings.gateway_port, access_log=None,
                print=None, shutdown_timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
