"""``python -m phstore``: the ``phstore`` command."""

import sys

from phstore.cli import main

sys.exit(main())
