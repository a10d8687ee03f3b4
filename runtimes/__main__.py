"""``python -m runtimes run ...`` / ``python -m runtimes records inspect FILE``."""

import sys

from runtimes.cli import main

sys.exit(main())
