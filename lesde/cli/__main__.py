"""``python -m lesde.cli ARGS``: the same as ``lesde ARGS``."""

import sys

from lesde.cli import main

sys.exit(main())
