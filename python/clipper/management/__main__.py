"""`python -m clipper.management`: run a frontend process (see `clipper.management.frontend`)."""

import sys

from clipper.management.frontend import main

sys.exit(main())
