"""``python -m edgesal.eval eval|compare ...``."""

import sys

from edgesal.eval.cli import main

sys.exit(main())
