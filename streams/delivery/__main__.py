import sys

from streams.delivery.cli import main

sys.exit(main())
