"""``python -m medimg_edge`` runs the CLI."""

import sys

from .cli import main

sys.exit(main())
