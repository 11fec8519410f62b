"""`python -m edgecore` is the `edgecore` command."""

import sys

from edgecore.cli import main

sys.exit(main())
