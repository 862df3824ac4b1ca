"""Specs and checks shared by the sweep and CLI tests (all derived from lesde.sweep.DEMO_SPEC)."""

from __future__ import annotations

import xarray as xr

from lesde.sweep import demo_spec


def small(**sweep_opts) -> dict:
    """A 3 x 2 grid with short runs, 3 batches of 2 cells: cheap enough to run several times per test."""
    return demo_spec(
        [0.5, 1.0, 2.0],
        [1.0, 4.0],
        simulate={"t_end": 100.0, "n_paths": 30, "save_times": [10.0, 100.0], "seed": 3},
        sweep={"cells_per_batch": 2, **sweep_opts},
    )


def slow() -> dict:
    """small() with Euler steps, one cell per batch: ~0.5 s a batch, long enough to interrupt from outside."""
    spec = small(cells_per_batch=1)
    spec["simulate"].update({"method": "euler", "dt": 0.02})
    return spec


def overflowing() -> dict:
    """p in {0.5, 1}, c in {1, 8} to t = 10^4: at p = 0.5, c = 8 the means reach e^792, beyond float64."""
    return demo_spec([0.5, 1.0], [1.0, 8.0], simulate={"n_paths": 12, "save_times": [1e2, 1e4]})


def assert_same_store(a: xr.Dataset, b: xr.Dataset) -> None:
    """Equal bit for bit: every variable, coordinate and attr (but the creation time)."""
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    skip = {"created"}
    assert {k: v for k, v in a.attrs.items() if k not in skip} == {k: v for k, v in b.attrs.items() if k not in skip}


def to_toml(spec: dict) -> str:
    """Minimal TOML writer for the specs above (numbers, strings, lists, inline tables; None is left out)."""

    def value(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items() if x is not None) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v)

    lines = []
    for section, table in spec.items():
        lines.append(f"[{section}]")
        lines += [f'"{k}" = {value(v)}' for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"
