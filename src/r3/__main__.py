"""`python -m r3 ...` is the same as `r3 ...`."""

import sys

from r3.cli import main

sys.exit(main())
