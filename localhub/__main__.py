"""Entry point for `python -m localhub`."""

import sys

from localhub.cli import main

sys.exit(main())
