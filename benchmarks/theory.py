"""Theory comparison speed: ``lesde.theory.attach`` and ``lesde compare-theory`` on a small LE-SDE run.

What it compares: the time :func:`lesde.theory.attach` takes on a 400-path, 5-time, K = 3 simulation
(``save="means"``, m = 3, n = 20 per class, x0 i.i.d.), against the time the class-mean law it attaches takes
by itself (:func:`lesde.theory.class_mean_law.class_mean_law`), for the three ways the law is obtained:

- ``spectral``: T = identity, alpha = 0.6, beta = 0.1 (closed form, two modes);
- ``constant``: the residual transform with constant alpha = 1, beta = 0.6 (Van Loan, one exponential per interval);
- ``time-varying``: the residual transform with alpha_t = (1 + t)^-0.5, beta = 0.1 (the moment ODE; the
  exact integrator's per-step Van Loan transitions, the alternative, take one matrix exponential per
  step of the run's dt = 0.01);

and ``compare-theory`` in-process (``lesde.cli.main``: open the file, attach, write the NetCDF, print the summary)
on the time-varying run. Imports are excluded (a warm process); each row is the median of ``--repeats`` (5),
with ``torch.set_num_threads(--threads)`` (1 by default: on a shared 2-core machine a second intra-op thread
competing with other jobs makes these small kernels erratic). Run it against another checkout
(``PYTHONPATH=path/to/other``) to time that code with the same script; rows whose function the checkout lacks
are skipped.

Usage: ``python benchmarks/theory.py [--repeats R] [--threads T]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import lesde
from lesde import cli, theory

CASES = {
    "spectral": dict(alpha=0.6, beta=0.1),
    "constant": dict(alpha=1.0, beta=0.6, transform="residual"),
    "time-varying": dict(alpha=lesde.schedules.PowerLaw(1.0, 0.5), beta=0.1, transform="residual"),
}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from lesde.theory.class_mean_law import class_mean_law
    except ImportError:  # a checkout without it: attach rows only
        class_mean_law = None
    print(f"lesde {lesde.__file__}; torch threads {torch.get_num_threads()}; median of {args.repeats}")
    print(f"{'case':<14} {'attach (s)':>11} {'law alone (s)':>14}")
    folder = Path(tempfile.mkdtemp())
    for name, kw in CASES.items():
        model = lesde.LESDE(3, 3, 20, noise=0.5, **kw)
        ds = lesde.simulate(model, t_end=2.0, dt=0.01, n_paths=400, n_save=5, save="means", progress=False, seed=1)
        theory.attach(ds)  # warm: first calls load scipy and torch kernels
        t_attach = _median_time(lambda ds=ds: theory.attach(ds), args.repeats)
        law = "-"
        if class_mean_law is not None:
            n = 3 * 3
            cov0 = torch.eye(n, dtype=torch.float64) / 20

            def solve(model=model, ds=ds, cov0=cov0, n=n):
                return class_mean_law(model, ds.time.values, torch.zeros(n, dtype=torch.float64), cov0)

            law = f"{_median_time(solve, args.repeats):.4f}"
        print(f"{name:<14} {t_attach:>11.4f} {law:>14}")
        ds.to_netcdf(folder / f"{name}.nc", engine="h5netcdf")

    def command():
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["compare-theory", str(folder / "time-varying.nc"), "--out", str(folder / "out.nc")])
        assert code == 0

    command()
    print(f"{'compare-theory':<14} {_median_time(command, args.repeats):>11.4f} {'(time-varying file)':>14}")
    print(f"shapes: 400 paths, {len(np.asarray(ds.time))} times, K = 3, m = 3")


if __name__ == "__main__":
    main()
