"""``python -m lesde.sweep SPEC.toml --store out.zarr ...``: the same as ``lesde sweep``."""

import sys

from lesde.cli import main_cli

sys.exit(main_cli())
