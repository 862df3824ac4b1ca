"""Any torchsde fixed-step method, run through ``torchsde.sdeint`` on the same model.

For the LE-SDE with sample-independent noise the Ito and Stratonovich forms coincide (the diffusion does not
depend on the state), so Stratonovich-only solvers (midpoint, heun, euler_heun, reversible_heun, log_ode) run
on a Stratonovich view of the same model; with ``noise="sampling"`` they are refused.
"""

from __future__ import annotations

import torch
import torchsde
from torch import nn

STRATONOVICH = {"midpoint", "heun", "euler_heun", "reversible_heun", "log_ode"}


class _AsStratonovich(nn.Module):
    sde_type = "stratonovich"

    def __init__(self, sde):
        super().__init__()
        self.sde = sde
        self.noise_type = sde.noise_type

    def f(self, t, y):
        return self.sde.f(t, y)

    def g(self, t, y):
        return self.sde.g(t, y)


def integrate(model, x0, grid, gen, record, name="euler", **_):
    B = x0.shape[0]
    y0 = x0.reshape(B, -1)
    sde = model
    if name in STRATONOVICH:
        if getattr(model, "noise_kind", None) == "sampling":
            raise ValueError(
                f"method='torchsde:{name}' is a Stratonovich solver; noise='sampling' is state dependent "
                "so the Ito and Stratonovich forms differ: use torchsde:euler, milstein or srk"
            )
        sde = _AsStratonovich(model)
    levy = {"srk": "space-time", "log_ode": "foster"}.get(name, "none")
    ts = torch.tensor(grid.times, dtype=y0.dtype, device=y0.device)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    # interval ends from the (possibly float32) ts tensor itself, so torchsde never sees t > t1 by rounding
    bm = torchsde.BrownianInterval(
        t0=float(ts[0]),
        t1=float(ts[-1]),
        size=(B, model.brownian_size),
        dtype=y0.dtype,
        device=y0.device,
        levy_area_approximation=levy,
        entropy=seed,
    )
    dt = min((t1 - t0) / n for _, t0, t1, n, _ in grid.intervals())
    with torch.no_grad():
        ys = torchsde.sdeint(sde, y0, ts, bm=bm, method=name, dt=dt)  # (T, B, D)
    for i in range(len(grid.times)):
        record(i, ys[i].reshape(x0.shape))
    return ys[-1].reshape(x0.shape)
