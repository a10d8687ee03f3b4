"""``python -m edgesal.runtimes run ...`` / ``python -m edgesal.runtimes records inspect FILE``."""

import sys

from edgesal.runtimes.cli import main

sys.exit(main())
