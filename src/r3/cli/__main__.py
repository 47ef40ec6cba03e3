"""`python -m r3.cli ...` is the same as `r3 ...`."""

import sys

from r3.cli import main

sys.exit(main())
