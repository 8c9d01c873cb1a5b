"""`python -m clipper.container` is the `clipper-model` command (see cli.py)."""

import sys

from clipper.container.cli import main

sys.exit(main())
