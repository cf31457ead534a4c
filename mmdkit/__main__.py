"""``python -m mmdkit``: the command line (see :mod:`mmdkit.cli`)."""
from mmdkit.cli import main

raise SystemExit(main())
