"""``python -m streams.delivery``: the executor and its operations (streams/delivery/cli.py).

Guarded: the workers' Faust app autodiscovers every module under ``streams/``."""

import sys

from streams.delivery.cli import main

if __name__ == "__main__":
    sys.exit(main())
