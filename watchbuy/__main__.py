"""`python -m watchbuy COMMAND`: the same as the `watchbuy` console script (e.g. in the container image)."""

import sys

from watchbuy.cli import main

sys.exit(main())
