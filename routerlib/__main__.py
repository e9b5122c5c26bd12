"""``python -m routerlib`` runs the CLI."""

import sys

from routerlib.cli import main

sys.exit(main())
