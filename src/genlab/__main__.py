"""`python -m genlab ...` is the `genlab` command."""

import sys

from .cli.main import main

sys.exit(main())
