"""``python -m console``: the operator console, settings from the environment."""

from __future__ import annotations

import logging
import ssl
import sys

from aiohttp import web

from console.app import create_app
from console.wiring import build
from ingest.logs import configure
from streams.errors import ConfigError
from streams.settings import Settings, load_settings


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.console_tls_certfile is None or settings.console_tls_keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.console_tls_certfile, settings.console_tls_keyfile)
    return context


def url_of(settings: Settings) -> str:
    scheme = "https" if settings.console_tls_certfile else "http"
    return f"{scheme}://{settings.console_host}:{settings.console_port}"


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure(settings.log_level)
    for noisy in ("aiohttp.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app = create_app(build(settings))
    logging.getLogger("console").info("operator console on %s (sign in with an API key)",
                                      url_of(settings))
    web.run_app(app, host=settings.console_host, port=settings.console_port,
                ssl_context=tls_context(settings), access_log=None, print=None,
                shutdown_timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
