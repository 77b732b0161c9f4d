"""``python -m pipeline`` is the ``mskus`` command."""

import sys

from pipeline.cli import main

sys.exit(main())
