"""``python -m watchsim``: the same as ``anxin sim``."""

import sys

from watchsim.cli import main

sys.exit(main())
