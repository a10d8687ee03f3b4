"""``python -m edgesal.cli ...``: the same as ``edgesal ...``."""

import sys

from edgesal.cli import main

sys.exit(main())
