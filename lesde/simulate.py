r"""``simulate``: integrate a model over many paths and return an xarray Dataset.

Four stages, each a short function: `_validate` (every argument checked before any work, errors naming
the parameter and the accepted values), ``plan_run`` in ``lesde/_run_plan.py`` (the memory the run needs,
refused up front with the numbers when it does not fit, and the chunks of paths), `_run` (the method
integrates chunk by chunk into the recorder) and `_dataset`.

Reproducibility: the same seed gives identical output whatever the free memory, the thread count and
``chunk_size``: paths draw their noise per fixed block of paths seeded from (seed, block index)
(`lesde.integrators.seeding`), and chunks only group whole blocks. ``seed`` may be a list of seeds, one per
equal group of paths, each group then equal to a run of its own.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ._recorder import Recorder, SimulationOverflowError
from ._run_plan import RunPlan, intra_op_threads, plan_run
from .integrators import MAX_STEPS, Grid, Integrator, get, known_methods
from .integrators.protocol import is_lesde
from .integrators.seeding import PathRNG, seed_groups
from .integrators.start import Start
from .validation import as_tensor, check_choice, check_device, check_int, check_positive_float

if TYPE_CHECKING:
    import xarray as xr

SAVE_MODES = ("full", "means", "metrics")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: the most save times one run may record
MAX_SAVES = 10**6


def save_times_for(t_end: float, dt: float, save_times=None, n_save=None) -> torch.Tensor:
    """The save times (t = 0 first), checked: strictly increasing, finite, within [0, t_end]."""
    t_end = check_positive_float("t_end", t_end)
    dt = check_positive_float("dt", dt)
    if dt > t_end:
        raise ValueError(f"dt={dt} must not exceed t_end={t_end}")
    if t_end / dt > MAX_STEPS:
        raise ValueError(
            f"t_end / dt = {t_end / dt:.3g} steps is more than the {MAX_STEPS:.0e} one run may take: use a larger dt, "
            "or method='exact' (no stepping error, any spacing of save times)"
        )
    if save_times is not None and n_save is not None:
        raise ValueError("give either save_times or n_save, not both")
    if save_times is None:
        n = check_int("n_save", n_save if n_save is not None else 101, minimum=2, maximum=MAX_SAVES)
        return torch.linspace(0.0, t_end, n, dtype=torch.float64)
    ts = as_tensor("save_times", save_times)
    if ts.ndim > 1:
        raise ValueError(f"save_times must be a 1-D sequence of times, got shape {tuple(ts.shape)}")
    ts = ts.flatten()
    if ts.numel() < 1:
        raise ValueError("save_times must be a non-empty sequence of finite times")
    if ts.numel() > MAX_SAVES:
        raise ValueError(f"save_times has {ts.numel()} entries; at most {MAX_SAVES} are accepted")
    if (ts[1:] <= ts[:-1]).any():
        raise ValueError(f"save_times must be strictly increasing, got {ts.tolist()[:8]}")
    if ts[0] < 0 or ts[-1] > t_end * (1 + 1e-12):
        raise ValueError(f"save_times must lie in [0, t_end={t_end}], got [{float(ts[0])}, {float(ts[-1])}]")
    if ts[0] > 0:
        ts = torch.cat([ts.new_zeros(1), ts])
    return ts


@dataclass
class _Request:
    """A simulate call with every argument checked and normalised."""

    model: Any
    method_name: str
    method: Integrator
    save: str
    grid: Grid
    n_paths: int
    dtype: torch.dtype
    device: torch.device
    seeds: list[int]
    start: Start
    chunk_size: int | None
    progress: bool
    bm: Any
    dt: float
    noise_dtype: torch.dtype | None = None

    @property
    def lesde(self) -> bool:
        return is_lesde(self.model)


def _check_x0(x0, model, n_paths: int, dtype) -> tuple[torch.Tensor | None, tuple[int, ...]]:
    """x0 as (shape) shared or (n_paths, *shape) per path, and one path's state shape."""
    if is_lesde(model):
        shape = (model.num_samples, model.dim)
    elif x0 is None:
        raise ValueError("a generic model needs x0 (the initial state, shape (D,) or (n_paths, D))")
    else:
        x = as_tensor("x0", x0)
        shape = tuple(x.shape[1:]) if x.ndim >= 2 and x.shape[0] == n_paths else tuple(x.shape)
    if x0 is None:
        return None, shape
    x = as_tensor("x0", x0)  # refuses complex, NaN and inf
    numel = math.prod(shape)
    if x.shape == shape or (x.ndim == 1 and x.numel() == numel):
        return x.reshape(shape).to(dtype), shape
    if x.shape[0] == n_paths and math.prod(x.shape[1:]) == numel and x.ndim >= 2:
        return x.reshape(n_paths, *shape).to(dtype), shape
    want = f"(N, m) = {shape}, (n_paths, N, m) = ({n_paths}, {shape[0]}, {shape[1]})" if is_lesde(model) else ""
    raise ValueError(
        f"x0 has shape {tuple(x.shape)}; accepted: {want or f'{shape} or (n_paths, *{shape})'} or the flattened forms"
    )


def _bm_span(bm) -> tuple[float, float] | None:
    """The time span of a torchsde Brownian motion (BrownianInterval, or BrownianPath / BrownianTree wrapping one)."""
    for obj in (bm, getattr(bm, "_interval", None)):
        if obj is not None and hasattr(obj, "_start") and hasattr(obj, "_end"):
            return float(obj._start), float(obj._end)
    return None


def _check_bm(bm, model, n_paths: int, grid: Grid) -> None:
    """A user's Brownian motion must have one channel per path and Brownian dimension, and cover [0, t_end]
    (torchsde only warns when asked for increments outside its span, and returns wrong ones)."""
    size = tuple(getattr(bm, "shape", ()))
    want = (n_paths, int(getattr(model, "brownian_size", 0) or 0))
    if size and size != want:
        raise ValueError(f"bm has shape {size}; it must be (n_paths, brownian_size) = {want}")
    span = _bm_span(bm)
    t0, t1 = grid.times[0], grid.times[-1]
    if span is not None and (span[0] > t0 or span[1] < t1 * (1 - 1e-12)):
        raise ValueError(
            f"bm covers times [{span[0]:g}, {span[1]:g}] but the run needs [{t0:g}, {t1:g}]: make it with "
            f"t0 <= {t0:g} and t1 >= {t1:g} (e.g. torchsde.BrownianInterval(t0=0.0, t1=t_end, ...))"
        )


def _validate(model, t_end, dt, n_paths, save_times, n_save, method, save, device, dtype, seed, x0, progress,
              chunk_size, x0_scale, bm, noise_dtype=None) -> _Request:  # fmt: skip
    n_paths = check_int("n_paths", n_paths, 1)
    save = check_choice("save", save, SAVE_MODES)
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype={dtype} is not supported; accepted: torch.float32, torch.float64")
    dev = check_device(device, dtype)
    integ = get(method)
    lesde = is_lesde(model)
    if not lesde:
        if not hasattr(model, "f") or not (hasattr(model, "g") or hasattr(model, "g_prod")):
            raise TypeError("model must be an LESDE or a torchsde-contract module with f(t, y) and g(t, y) or g_prod")
        if save != "means" and save != "full":
            raise ValueError("save='metrics' needs an LESDE model (class structure); use save='full' for other models")
    reason = integ.check(model, save=save, bm=bm)
    if reason:
        raise ValueError(reason)
    P = model.param_batch if lesde else None
    if P is not None and P != n_paths:
        raise ValueError(f"the schedules carry {P} per-path parameter sets but n_paths={n_paths}; they must match")
    ts = save_times_for(t_end, dt, save_times, n_save)
    dt = check_positive_float("dt", dt)
    grid = Grid.make(ts, dt)
    if grid.total_steps > MAX_STEPS:
        raise ValueError(f"the save times need {grid.total_steps:.3g} steps, more than the {MAX_STEPS:.0e} allowed")
    seeds = seed_groups(seed, n_paths)
    x0, shape = _check_x0(x0, model, n_paths, dtype)
    scale = check_positive_float("x0_scale", x0_scale)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, 1)
    if bm is not None:
        _check_bm(bm, model, n_paths, grid)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if noise_dtype is not None and noise_dtype not in DTYPES.values():
        raise ValueError(f"noise_dtype={noise_dtype} is not supported; accepted: None, torch.float32, torch.float64")
    start = Start(x0, scale, shape, n_paths, dtype)
    return _Request(model, method, integ, save, grid, n_paths, dtype, dev, seeds, start, chunk_size, progress, bm, dt,
                    noise_dtype)  # fmt: skip


def _overflow_hint(req: _Request) -> str:
    hint = ""
    if req.dtype != torch.float64:
        hint += " Use dtype=torch.float64 (range 1e308 instead of 3e38)."
    if req.method_name != "exact" and req.lesde and get("exact").check(req.model, save=req.save) is None:
        hint += " method='exact' has no stepping error and keeps float64 finite to separations of e^700."
    return hint + " Or shorten t_end, or reduce the elasticity or the noise."


def _run(req: _Request, plan: RunPlan):
    """Integrate chunk by chunk; on Ctrl-C keep what is complete. Returns (outputs, grid, interrupted)."""
    model = req.model.on(req.device) if req.lesde else _module_on(req.model, req.device, req.dtype)
    grid = req.grid
    np_dtype = np.dtype(str(req.dtype).split(".")[-1])
    rec = Recorder(model, req.save, req.n_paths, grid, np_dtype, _overflow_hint(req))
    P = model.param_batch if req.lesde else None
    bar = tqdm(
        total=grid.total_steps * len(plan.chunks), disable=not req.progress, desc=f"simulate[{req.method_name}]",
        unit="step",
    )  # fmt: skip
    done_paths, current, interrupted = 0, {"stop": 0, "last": -1}, ""
    try:
        for blocks in plan.chunks:
            rows = slice(blocks[0].start, blocks[-1].stop)
            current.update(stop=rows.stop, last=-1)
            m_c = model.select_paths(rows) if P is not None else model
            record = rec.for_chunk(m_c, rows)

            def record_and_tick(i, _record=record, **parts):
                _record(i, **parts)
                current["last"] = i
                if i > 0:
                    bar.update(grid.steps[i - 1])

            B = rows.stop - rows.start
            per_step = B * (model.num_classes * model.dim if req.lesde else math.prod(req.start.shape))
            with intra_op_threads(req.device, per_step):
                rng = PathRNG(blocks, req.device, draw_dtype=req.noise_dtype)
                req.method.integrate(m_c, req.start, grid, rng, record_and_tick, req.save, bm=req.bm, rows=rows)
            done_paths = rows.stop
    except KeyboardInterrupt:
        # keep what is complete: every finished chunk, or else the first chunk up to its last save time
        keep_paths, keep_times = (done_paths, len(grid.times)) if done_paths else (current["stop"], current["last"] + 1)
        if keep_times < 1:
            raise
        rec.out = {k: v[:keep_paths, :keep_times] for k, v in rec.out.items()}
        interrupted = (
            f"KeyboardInterrupt: kept {keep_paths} of {req.n_paths} paths and {keep_times} of "
            f"{len(grid.times)} save times (t <= {grid.times[keep_times - 1]:g})"
        )
        grid = grid.truncated(keep_times)
        warnings.warn(f"simulate interrupted; returning the completed part ({interrupted})", stacklevel=3)
    finally:
        bar.close()
    return rec.outputs(), grid, interrupted


def _module_on(model, device, dtype):
    if isinstance(model, torch.nn.Module):
        import copy

        return copy.deepcopy(model).to(device=device, dtype=dtype)
    return model


def simulate(
    model,
    t_end: float,
    dt: float,
    n_paths: int,
    save_times: Sequence[float] | torch.Tensor | None = None,
    n_save: int | None = None,
    method: str = "euler",
    save: str = "means",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int | Sequence[int] = 0,
    x0: torch.Tensor | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
    x0_scale: float = 1.0,
    bm: Any = None,
    noise_dtype: torch.dtype | None = None,
) -> xr.Dataset:
    r"""Simulate ``n_paths`` paths of an SDE from t = 0 to ``t_end`` and return an xarray Dataset.

    Parameters
    ----------
    model : LESDE or any torchsde-contract module
        Generic modules need ``f``, ``g`` and/or ``g_prod``, ``noise_type``, ``sde_type`` and ``brownian_size``.
    t_end : float
        Final time and the largest step; the steps between save times are equal and at most ``dt``.
    dt : float
        Described with `t_end` above.
    n_paths : int
        Independent paths; with per-path schedule parameters it must equal their length.
    save_times
        Output times (t = 0 is always included), or their number on an even grid (default 101).
    n_save
        Described with `save_times` above.
    method : str
        ``"euler"``, ``"exact"`` or ``"torchsde:<name>"`` (see `lesde.integrators.known_methods`); the
        method's ``check`` refuses a model it cannot integrate before any work, with the reason.
    save : "full" | "means" | "metrics"
        Every sample; class means and within-class variance; or NC metrics and separability only.
    device
        Where and in which precision to run (``"mps"`` does not support float64).
    dtype
        Described with `device` above.
    seed : int in [0, 2^32), or a sequence of such ints
        Noise is drawn per block of paths from (seed, block index), so output depends on the seed alone, not on
        the chunking, the free memory or the thread count. A sequence of G seeds splits the paths into G equal
        groups; group g equals a run of ``n_paths / G`` paths with seed ``seed[g]``.
    x0 : tensor, optional
        Initial features: (N, m) shared by all paths, or (n_paths, N, m). Default i.i.d. N(0, x0_scale^2).
    progress : bool
        Show a tqdm progress bar over steps.
    chunk_size : int, optional
        Paths per chunk (rounded to whole blocks of `lesde.integrators.PATH_BLOCK` paths); default sized to
        the device's free memory. It changes the memory used, never the numbers.
    x0_scale : float
        Standard deviation of the default initial features (finite, > 0).
    bm : torchsde Brownian motion, optional
        A ``torchsde.BrownianInterval`` (or path) of shape (n_paths, model.brownian_size) the run follows, so that
        strong-error studies can share Brownian paths across methods (euler and torchsde methods).
    noise_dtype : torch.float32, optional
        Draw the Gaussian numbers in float32 and promote them to a float64 state: about 4.5x faster draws on the
        CPU, where the draws dominate. Every draw is an increment of size O(sigma sqrt(dt)) (or a transition's
        noise), so float32's relative precision (6e-8) is far below anything a float64 run resolves, while the
        state, the drift and the accumulation stay float64. Never applied silently: default None draws in the
        state's dtype; recorded in ``attrs["noise_dtype"]``.

    Returns
    -------
    xarray.Dataset
        ``class_mean(path, time, class, feature)``, ``within_var(path, time, class)`` (save="means"/"full"),
        ``features(path, time, sample, feature)`` with ``label(sample)`` (save="full"), metric variables over
        ``(path, time)`` (save="metrics"), or ``state(path, time, component)`` for generic models. Attrs hold the
        model specification and the run settings (``integrator_plan`` names the method's path and how each
        output was drawn).

    Examples
    --------
    >>> import lesde
    >>> ds = lesde.simulate(lesde.LESDE(3, 2, 4), t_end=1.0, dt=0.01, n_paths=8, progress=False)
    >>> ds.class_mean.dims
    ('path', 'time', 'class', 'feature')
    """
    req = _validate(model, t_end, dt, n_paths, save_times, n_save, method, save, device, dtype, seed, x0,
                    progress, chunk_size, x0_scale, bm, noise_dtype)  # fmt: skip
    plan = plan_run(req)
    out, grid, interrupted = _run(req, plan)
    return _dataset(req, plan, out, grid, interrupted)


def _dataset(req: _Request, plan: RunPlan, out: dict, grid: Grid, interrupted: str) -> xr.Dataset:
    """The recorded arrays as a Dataset over (path, time, ...) with the run's specification in attrs."""
    from .schema import make_dataset  # xarray is imported here, not by `import lesde`

    model = req.model
    n_paths = next(iter(out.values())).shape[0]
    coords: dict[str, Any] = {"path": np.arange(n_paths), "time": np.asarray(grid.times)}
    attrs: dict[str, Any] = {}
    if req.lesde:
        K, m = model.num_classes, model.dim
        if req.save != "metrics":
            coords.update({"class": np.arange(K), "feature": np.arange(m)})
        if "features" in out:
            coords.update({"sample": np.arange(model.num_samples), "label": ("sample", model.labels.cpu().numpy())})
        attrs.update(samples_per_class=json.dumps(model.counts.tolist()), num_classes=K, dim=m)
        data = dict(out)
    else:
        data = {"state": out["state"].reshape(*out["state"].shape[:2], -1)}
        coords["component"] = np.arange(data["state"].shape[-1])
    strong, weak = req.method.orders(model)
    plan_name = req.method.plan(model, req.save, bm=req.bm)
    attrs.update(
        spec=json.dumps(model.to_spec() if hasattr(model, "to_spec") else {"model": type(model).__name__}),
        method=req.method_name,
        integrator_plan=plan_name,
        exact_plan=plan_name.split(" ")[0] if req.method_name == "exact" else "",
        strong_order="none" if strong is None else strong,
        weak_order="none" if weak is None else weak,
        dt=req.dt,
        t_end=float(grid.times[-1]),
        seed=req.seeds[0] if len(req.seeds) == 1 else json.dumps(req.seeds),
        n_paths=req.n_paths,
        device=str(req.device),
        device_name=torch.cuda.get_device_name(req.device) if req.device.type == "cuda" else "cpu",
        dtype=str(req.dtype).split(".")[-1],
        noise_dtype=str(req.noise_dtype or req.dtype).split(".")[-1],
        interrupted=interrupted,
        save=req.save,
        chunk_size=plan.chunk_paths,
        x0="iid"
        if req.start.x0 is None
        else ("per-path" if req.start.x0.ndim == len(req.start.shape) + 1 else "shared"),
        x0_scale=req.start.scale,  # the initial law lesde.theory's closed-form moments start from
    )
    return make_dataset(data, coords, lead=("path", "time"), time="sde", attrs=attrs)


__all__ = ["simulate", "SimulationOverflowError", "known_methods", "DTYPES", "save_times_for"]
