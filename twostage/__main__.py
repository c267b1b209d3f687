"""``python -m twostage COMMAND ...``: the ``twostage`` command."""

import sys

from twostage.cli import main

sys.exit(main())
