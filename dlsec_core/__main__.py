"""`python -m dlsec_core ...`: see `dlsec_core.cli`."""

import sys

from dlsec_core.cli import main

sys.exit(main())
