"""``python -m mskus`` is the ``mskus`` command."""

import sys

from mskus.cli import main

sys.exit(main())
