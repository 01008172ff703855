"""``python -m fastmlp ...``: the command line of :mod:`fastmlp.cli`."""
from .cli import main

raise SystemExit(main())
