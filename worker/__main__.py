"""`python -m worker`: the same as the `anomaly-worker` command."""

import sys

from worker.cli import main

sys.exit(main())
