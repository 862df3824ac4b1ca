r"""``simulate``: integrate a model over many paths and return an xarray Dataset (DESIGN.md sections 6-7).

Paths run in chunks sized to the device's free memory; the whole request is checked before any work
starts (a run that cannot fit raises ``MemoryError`` with the numbers). Results are checked for overflow at
every save time: an inf/NaN state raises :class:`SimulationOverflowError` naming the time reached.

Reproducibility: the same arguments (seed, device, chunk size) give identical output. Chunk ``c`` draws from
its own generator seeded with ``(seed, c)``, so changing ``chunk_size`` changes the draws.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from ._attrs import finalize
from ._validate import check_choice, check_int, check_positive_float
from .integrators import Grid, exact, known_methods, resolve
from .model import LESDE

SAVE_MODES = ("full", "means", "metrics")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class SimulationOverflowError(OverflowError):
    """The state became inf or NaN."""


def _resolve_device(device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} but CUDA is not available here; accepted: 'cpu'"
            + (" or 'mps'" if torch.backends.mps.is_available() else "")
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={str(device)!r} is not supported; accepted: 'cpu', 'cuda', 'cuda:N'")
    return dev


def _free_bytes(dev: torch.device) -> int:
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def save_times_for(t_end: float, dt: float, save_times=None, n_save=None) -> torch.Tensor:
    t_end = check_positive_float("t_end", t_end)
    dt = check_positive_float("dt", dt)
    if dt > t_end:
        raise ValueError(f"dt={dt} must not exceed t_end={t_end}")
    if save_times is not None and n_save is not None:
        raise ValueError("give either save_times or n_save, not both")
    if save_times is None:
        n = check_int("n_save", n_save if n_save is not None else 101, minimum=2)
        return torch.linspace(0.0, t_end, n, dtype=torch.float64)
    ts = torch.as_tensor(save_times, dtype=torch.float64).flatten()
    if ts.numel() < 1 or not torch.isfinite(ts).all():
        raise ValueError("save_times must be a non-empty sequence of finite times")
    if (ts[1:] <= ts[:-1]).any():
        raise ValueError(f"save_times must be strictly increasing, got {ts.tolist()[:8]}")
    if ts[0] < 0 or ts[-1] > t_end * (1 + 1e-12):
        raise ValueError(f"save_times must lie in [0, t_end={t_end}], got [{float(ts[0])}, {float(ts[-1])}]")
    if ts[0] > 0:
        ts = torch.cat([ts.new_zeros(1), ts])
    return ts


class _Recorder:
    """Reduces the state at each save time into preallocated host arrays for one chunk's paths."""

    def __init__(self, model, save, n_paths, n_times, np_dtype, grid):
        self.model, self.save, self.grid = model, save, grid
        self.lesde = isinstance(model, LESDE)
        self.out: dict[str, np.ndarray] = {}
        P, T = n_paths, n_times
        if self.lesde:
            K, m, N = model.num_classes, model.dim, model.num_samples
            if save in ("full", "means"):
                self.out["class_mean"] = np.empty((P, T, K, m), np_dtype)
                self.out["within_var"] = np.empty((P, T, K), np_dtype)
            if save == "full":
                self.out["features"] = np.empty((P, T, N, m), np_dtype)
        else:
            self.out["state"] = None  # allocated at the first record (size known then)
        self.offset = 0

    def for_chunk(self, start):
        self.offset = start
        return self.record

    def record(self, i, X, means=None, deviations=None):
        """Reduce the state X (B, N, m) at save index i. Integrators that keep the class means (B, K, m) and
        within-class deviations (B, N, m) apart pass them too: at extreme scales (means ~ 1e170) X = M + Z has
        lost Z to rounding, while Z itself is accurate."""
        t = self.grid.times[i]
        if not bool(torch.isfinite(X).all()):
            hint = " Use dtype=torch.float64 (range 1e308 instead of 3e38)" if X.dtype != torch.float64 else ""
            raise SimulationOverflowError(
                f"the state overflowed (inf or NaN) by t={t:.6g} (save index {i}).{hint}; or shorten t_end, reduce "
                "the elasticity, or use method='exact' where it applies."
            )
        sl = slice(self.offset, self.offset + X.shape[0])
        if not self.lesde:
            if self.out["state"] is None:
                total = self.total_paths
                self.out["state"] = np.empty((total, len(self.grid.times), X.shape[1]), X.cpu().numpy().dtype)
            self.out["state"][sl, i] = X.detach().cpu().numpy()
            return
        model = self.model
        if self.save in ("full", "means"):
            M = model.class_means(X) if means is None else means  # (B, K, m)
            dev = X - M[:, model.labels.to(X.device)] if deviations is None else deviations
            sq = (dev * dev).sum(-1)  # (B, N)
            wv = torch.matmul(sq, model._averaging(X).T)  # (B, K)
            self.out["class_mean"][sl, i] = M.cpu().numpy()
            self.out["within_var"][sl, i] = wv.cpu().numpy()
            if self.save == "full":
                self.out["features"][sl, i] = X.cpu().numpy()
        else:
            vals = _online_metrics(model, X)
            for k, v in vals.items():
                if k not in self.out:
                    self.out[k] = np.empty((self.total_paths, len(self.grid.times)), v.cpu().numpy().dtype)
                self.out[k][sl, i] = v.cpu().numpy()


def _online_metrics(model, X) -> dict[str, torch.Tensor]:
    """NC metrics and ncm pairwise separability of every path at one time (save='metrics').

    The values of ``nc_metrics(X, labels, names=ONLINE_METRICS)`` and ``pair_stats(X, labels)`` on the state X
    itself (what save='full' stores), computed in one pass over the deviations by
    :func:`lesde.metrics.online_metrics`: X divided by its largest entry per path and split into class means and
    deviations exactly as nc_metrics does (same unit, so the class sums cannot overflow and the noise-floor
    decisions are the same; same summation, so even cancelling deviations agree to rounding).
    The split integrators' own means and deviations are more accurate at extreme scales (X ~ 1e170 has lost the
    deviations to rounding) but are not used here: the metrics would then no longer equal nc_metrics of the
    saved features, which sweeps compare with (tests/test_sweep.py, to 1e-12).
    """
    from .metrics import _amax_scale, _class_split, online_metrics

    labels = model.labels.to(X.device)
    onehot = torch.nn.functional.one_hot(labels, model.num_classes).to(X.dtype)  # (N, K)
    X = X / _amax_scale(X)[:, None, None]  # (B, N, m)
    # X is the fresh normalised copy here, so the deviations may overwrite it
    means, deviations = _class_split(X, labels, onehot, onehot.sum(0), inplace=True)  # (B, K, m), (B, N, m)
    vals = online_metrics(means, deviations, labels, scale=1.0)
    vals["all_separable"] = vals["all_separable"].to(torch.int8)
    return vals


@contextlib.contextmanager
def _intra_op_threads(dev: torch.device, elements_per_step: int):
    """One intra-op thread for small CPU steps: a second thread only adds synchronisation there (measured here:
    a 10-sample, 64-path run took 2.3 s with 2 threads on a loaded 2-core machine and 0.15 s with 1)."""
    if dev.type != "cpu" or elements_per_step >= SMALL_STEP_ELEMENTS or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


SMALL_STEP_ELEMENTS = 2**17


def _bytes_per_path(model, save, T, itemsize, method) -> tuple[int, int]:
    """(device working bytes, host output bytes) per path."""
    if isinstance(model, LESDE):
        K, m, N = model.num_classes, model.dim, model.num_samples
        state = N * m * itemsize
        work = state * (6 if method == "exact" else 4)
        if model.noise_kind == "sampling":
            work += N * N * m * itemsize if method.startswith("torchsde") else state
        if model.noise_kind == "covariance" and method.startswith("torchsde"):
            work += (N * m) ** 2 * itemsize
        out = {"full": T * (N * m + K * m + K), "means": T * (K * m + K), "metrics": T * 16}[save] * itemsize
    else:
        D = model.brownian_size
        state = getattr(model, "state_size", D) * itemsize
        work = state * 6
        out = T * state
    if method.startswith("torchsde"):
        work += T * state * 2 + 16 * state  # sdeint keeps every save time; the Brownian interval caches
    return work, out


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
    seed: int = 0,
    x0: torch.Tensor | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
    x0_scale: float = 1.0,
) -> xr.Dataset:
    r"""Simulate ``n_paths`` paths of an SDE from t = 0 to ``t_end`` and return an xarray Dataset.

    Parameters
    ----------
    model : LESDE or any torchsde-contract module
        Generic modules need ``f``, ``g`` and/or ``g_prod``, ``noise_type``, ``sde_type`` and ``brownian_size``.
    t_end, dt : float
        Final time and the largest step; the steps between save times are equal and at most ``dt``.
    n_paths : int
        Independent paths; with per-path schedule parameters it must equal their length.
    save_times, n_save : optional
        Output times (t = 0 is always included), or their number on an even grid (default 101).
    method : str
        ``"euler"``, ``"exact"`` or ``"torchsde:<name>"`` (see :func:`lesde.integrators.known_methods`).
    save : {"full", "means", "metrics"}
        Every sample; class means and within-class variance; or NC metrics and separability only.
    device, dtype, seed
        Where and in which precision to run, and the seed of the per-chunk generators.
    x0 : tensor, optional
        Initial features: (N, m) shared by all paths, or (n_paths, N, m). Default i.i.d. N(0, x0_scale^2).
    progress : bool
        Show a tqdm progress bar over steps.
    chunk_size : int, optional
        Paths per chunk; default sized to the device's free memory.

    Returns
    -------
    xarray.Dataset
        ``class_mean(path, time, class, feature)``, ``within_var(path, time, class)`` (save="means"/"full"),
        ``features(path, time, sample, feature)`` with ``label(sample)`` (save="full"), metric variables over
        ``(path, time)`` (save="metrics"), or ``state(path, time, component)`` for generic models. Attrs hold the
        model specification and the run settings.

    Examples
    --------
    >>> import lesde
    >>> ds = lesde.simulate(lesde.LESDE(3, 2, 4), t_end=1.0, dt=0.01, n_paths=8, progress=False)
    >>> ds.class_mean.dims
    ('path', 'time', 'class', 'feature')
    """
    n_paths = check_int("n_paths", n_paths, 1)
    ts = save_times_for(t_end, dt, save_times, n_save)
    dt = float(dt)
    save = check_choice("save", save, SAVE_MODES)
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype={dtype} is not supported; accepted: torch.float32, torch.float64")
    dev = _resolve_device(device)
    integrate, options = resolve(method)
    is_lesde = isinstance(model, LESDE)
    if not is_lesde:
        if not hasattr(model, "f") or not (hasattr(model, "g") or hasattr(model, "g_prod")):
            raise TypeError("model must be an LESDE or a torchsde-contract module with f(t, y) and g(t, y) or g_prod")
        if save != "means" and save != "full":
            raise ValueError("save='metrics' needs an LESDE model (class structure); use save='full' for other models")
    if method == "exact":
        exact.plan_for(model)  # raises ValueError with the reason before any work
    P = model.param_batch if is_lesde else None
    if P is not None and P != n_paths:
        raise ValueError(f"the schedules carry {P} per-path parameter sets but n_paths={n_paths}; they must match")

    grid = Grid.make(ts, dt)
    T = len(grid.times)
    itemsize = torch.empty((), dtype=dtype).element_size()
    work, out_bytes = _bytes_per_path(model, save, T, itemsize, method)
    host_free, dev_free = _free_bytes(torch.device("cpu")), _free_bytes(dev)
    if n_paths * out_bytes > 0.8 * host_free:
        raise MemoryError(
            f"the output ({n_paths} paths x {out_bytes / 2**20:.3g} MiB each = {n_paths * out_bytes / 2**30:.3g} GiB) "
            f"does not fit in free host memory ({host_free / 2**30:.3g} GiB): use save='means' or 'metrics', fewer "
            "save times (n_save) or fewer paths"
        )
    budget = 0.5 * dev_free if dev.type == "cuda" else 0.5 * (host_free - n_paths * out_bytes)
    if work > budget:
        raise MemoryError(
            f"one path needs {work / 2**30:.3g} GiB of working memory but only {budget / 2**30:.3g} GiB "
            f"is available on {dev}: use a smaller model or a larger device"
        )
    chunk = min(n_paths, int(budget // work)) if chunk_size is None else check_int("chunk_size", chunk_size, 1)
    chunk = max(1, min(chunk, n_paths))

    if is_lesde:
        model_dev = model.on(dev, dtype)
        shape = (model.num_samples, model.dim)
    else:
        model_dev = model.to(device=dev, dtype=dtype) if isinstance(model, torch.nn.Module) else model
        shape = None
    if x0 is not None:
        x0 = torch.as_tensor(x0, dtype=dtype)
        if not torch.isfinite(x0).all():
            raise ValueError("x0 contains NaN or inf")
        if shape is not None and x0.shape[-2:] != shape and x0.shape[-1] != shape[0] * shape[1]:
            raise ValueError(f"x0 must have shape (N, m) = {shape} or (n_paths, N, m), got {tuple(x0.shape)}")
    elif not is_lesde:
        raise ValueError("a generic model needs x0 (the initial state, shape (D,) or (n_paths, D))")

    rec = _Recorder(model_dev, save, n_paths, T, np.dtype(str(dtype).split(".")[-1]), grid)
    rec.total_paths = n_paths
    n_chunks = math.ceil(n_paths / chunk)
    bar = tqdm(total=grid.total_steps * n_chunks, disable=not progress, desc=f"simulate[{method}]", unit="step")
    done_paths, current, interrupted = 0, {"stop": 0, "last": -1}, ""
    try:
        for c in range(n_chunks):
            start, stop = c * chunk, min(n_paths, (c + 1) * chunk)
            B = stop - start
            current.update(stop=stop, last=-1)
            gen = torch.Generator(device=dev).manual_seed(int(seed) * 1_000_003 + c)
            m_c = model_dev.select_paths(slice(start, stop)) if P is not None else model_dev
            if x0 is None:
                X0 = x0_scale * torch.randn((B, *shape), generator=gen, dtype=dtype, device=dev)
            else:
                X0 = x0.to(dev)
                if shape is not None:
                    X0 = X0.reshape(*X0.shape[:-2], *shape) if X0.shape[-2:] == shape else X0.reshape(-1, *shape)
                X0 = (
                    X0[start:stop].clone()
                    if X0.ndim == (3 if shape else 2) and X0.shape[0] == n_paths
                    else X0.expand(B, *X0.shape[-(2 if shape else 1) :]).clone()
                )
            record = rec.for_chunk(start)

            def record_and_tick(i, X, _record=record, **parts):
                _record(i, X, **parts)
                current["last"] = i
                if i > 0:
                    bar.update(grid.steps[i - 1])

            # per-step work: the class means for LE-SDE integrators that step them, the whole state otherwise
            step_elements = B * (model.num_classes * model.dim if is_lesde else X0[0].numel())
            with _intra_op_threads(dev, step_elements):
                integrate(m_c, X0, grid, gen, record_and_tick, **options)
            done_paths = stop
    except KeyboardInterrupt:
        # keep what is complete: every finished chunk, or else the first chunk up to its last save time
        keep_paths, keep_times = (done_paths, len(grid.times)) if done_paths else (current["stop"], current["last"] + 1)
        if keep_times < 1:
            raise
        rec.out = {k: v[:keep_paths, :keep_times] for k, v in rec.out.items() if v is not None}
        grid = Grid(grid.times[:keep_times], grid.steps[: keep_times - 1])
        interrupted = (
            f"KeyboardInterrupt: kept {keep_paths} of {n_paths} paths and {keep_times} of "
            f"{len(ts)} save times (t <= {grid.times[-1]:g})"
        )
        warnings.warn(f"simulate interrupted; returning the completed part ({interrupted})", stacklevel=2)
    finally:
        bar.close()

    exact_plan = exact.plan_for(model) if method == "exact" else ""
    return _to_dataset(
        model,
        rec.out,
        grid,
        save,
        dict(
            spec=json.dumps(model.to_spec() if hasattr(model, "to_spec") else {"model": type(model).__name__}),
            method=method,
            exact_plan=exact_plan,
            dt=dt,
            t_end=float(t_end),
            seed=int(seed),
            n_paths=n_paths,
            device=str(dev),
            device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            dtype=str(dtype).split(".")[-1],
            interrupted=interrupted,
            save=save,
            chunk_size=chunk,
        ),
    )


def _to_dataset(model, out, grid, save, attrs) -> xr.Dataset:
    coords = {"time": np.asarray(grid.times)}
    data = {}
    if isinstance(model, LESDE):
        K, m = model.num_classes, model.dim
        if save != "metrics":
            coords.update({"class": np.arange(K), "feature": np.arange(m)})
        attrs["samples_per_class"] = json.dumps(model.counts.tolist())
        attrs["num_classes"], attrs["dim"] = K, m
        if "class_mean" in out:
            data["class_mean"] = (("path", "time", "class", "feature"), out["class_mean"])
            data["within_var"] = (("path", "time", "class"), out["within_var"])
        if "features" in out:
            data["features"] = (("path", "time", "sample", "feature"), out["features"])
            coords["sample"] = np.arange(model.num_samples)
            coords["label"] = ("sample", model.labels.numpy())
        for k, v in out.items():
            if k not in ("class_mean", "within_var", "features"):
                data[k] = (("path", "time"), v)
    else:
        data["state"] = (("path", "time", "component"), out["state"])
    n_paths = next(iter(data.values()))[1].shape[0]
    coords["path"] = np.arange(n_paths)
    return finalize(xr.Dataset(data, coords=coords), **attrs)


__all__ = ["simulate", "SimulationOverflowError", "known_methods", "DTYPES"]
