"""The ``lesde`` command: the application layer, on top of every library package (none of which imports it).

One module per subcommand, each with its ``add_parser`` and the job it runs (the TOML and file-writing jobs
live here, not in the library):

```bash
lesde demo [--out DIR]                                                        cmd_demo
lesde simulate CONFIG.toml --out run.nc                                       cmd_simulate
lesde sweep SWEEP.toml --store out.zarr [--workers N | --scheduler ADDRESS]   cmd_sweep
lesde plot {phase,nc,cosines,elasticity,imitation,sgd,theory} FILE --out F   cmd_plot
lesde compare-sgd CONFIG.toml --out cmp.nc                                    cmd_compare_sgd
lesde estimate --dataset mnist1d --classes 3 --net mlp --out est.nc           cmd_estimate
lesde imitate est.nc --out imit.nc                                            cmd_imitate
lesde compare-theory FILE --out cmp.nc [--plot cmp.png]                       cmd_compare_theory
lesde methods                                                                 cmd_methods
lesde example list | copy NAME [DIR] [--force] [--quiet]                      cmd_example
```

Failures never end in a traceback (unless ``--debug``): each is one line on stderr, ``lesde CMD: error: ...``,
naming the problem, and the exit code says what kind it was: 2 for bad input (arguments, config files, input
files, output paths, stores), 1 for a run that failed (a numerical failure, failed sweep cells, a lost cluster,
anything unexpected), 130 for an interrupt (Ctrl-C). Input files are read and output folders created (or
refused) before any run starts. Warnings are one line each, ``lesde CMD: warning: ...``, without a source path;
every command that writes a file prints ``wrote PATH``, and ``--quiet`` drops those lines and the progress bars
(`lesde.cli.console`). ``python -m lesde.cli ARGS`` is the same as ``lesde ARGS``.
"""

from __future__ import annotations

from .failures import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from .main import build_parser, main

__all__ = ["main", "build_parser", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]
