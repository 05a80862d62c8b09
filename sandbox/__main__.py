"""``python -m sandbox {start,stop,status,reset,serve,config,settle}``: see :mod:`sandbox.cli`."""

import sys

from .cli import main

sys.exit(main())
