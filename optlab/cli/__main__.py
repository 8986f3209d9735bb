"""``python -m optlab.cli``: the ``optlab`` command."""

import sys

from optlab.cli import main

sys.exit(main())
