"""Any torchsde fixed-step method, run through ``torchsde.sdeint`` on the same model (``method="torchsde:NAME"``).

Each save interval is integrated with its own equal steps (at most ``dt``), all intervals sharing one
``BrownianInterval`` per path block, so save times that are not multiples of dt are hit exactly instead of
being interpolated between steps. The Brownian interval is built with the step size, so its tree stays shallow
for any number of steps. Paths run block by block (`lesde.integrators.seeding`), each block with its own
Brownian motion seeded from the block's stream, so the output does not depend on the chunking either.

For the LE-SDE with sample-independent noise the Ito and Stratonovich forms coincide (the diffusion does not
depend on the state), so Stratonovich solvers run on `lesde.LESDE.as_stratonovich`; with
``noise="sampling"`` they are refused, as are solvers whose noise types torchsde does not allow.
"""

from __future__ import annotations

import torch
import torchsde
from torchsde._core import methods as _ts_methods

from .protocol import Integrator, Memory, is_lesde

STRATONOVICH = {"midpoint", "heun", "euler_heun", "reversible_heun", "log_ode"}
#: (strong order for additive noise, strong order for general state-dependent noise or None, weak order), as
#: torchsde's solver classes declare them (their ``strong_order`` set from the noise type, and ``weak_order``)
ORDERS = {
    "euler": (1.0, 0.5, 1.0),
    "milstein": (1.0, None, 1.0),
    "srk": (1.5, None, 1.5),
    "midpoint": (1.0, 0.5, 1.0),
    "heun": (1.0, 0.5, 1.0),
    "euler_heun": (1.0, 0.5, 1.0),
    "reversible_heun": (1.0, 0.5, 1.0),
    "log_ode": (1.0, 0.5, 1.0),
}
LEVY = {"srk": "space-time", "log_ode": "foster"}


def torchsde_methods() -> list[str]:
    """torchsde's fixed-step methods (the adjoint-only one excluded)."""
    from torchsde.settings import METHODS

    names = (v for k, v in vars(METHODS).items() if not k.startswith("_") and isinstance(v, str))
    return sorted(n for n in names if not n.startswith("adjoint"))


class TorchsdeMethod(Integrator):
    """``torchsde.sdeint`` with method ``name``."""

    def __init__(self, name: str):
        self.solver = name
        self.name = f"torchsde:{name}"
        self.strong_order, self.strong_order_state_dependent, self.weak_order = ORDERS.get(name, (None, None, None))

    def _sde(self, model):
        if self.solver in STRATONOVICH and getattr(model, "sde_type", "ito") == "ito":
            return model.as_stratonovich() if is_lesde(model) else None
        return model

    def check(self, model, save="means", bm=None, **_):
        if getattr(model, "noise_kind", None) == "sampling" and self.solver in STRATONOVICH:
            return (
                f"method={self.name!r} is a Stratonovich solver; noise='sampling' is state dependent so the Ito and "
                "Stratonovich forms differ: use torchsde:euler"
            )
        sde = self._sde(model)
        if sde is None:
            return f"method={self.name!r} is a Stratonovich solver and the model is an Ito SDE"
        solver = _ts_methods.select(self.solver, sde.sde_type)
        if sde.noise_type not in solver.noise_types:
            return (
                f"method={self.name!r} supports noise types {', '.join(solver.noise_types)}, but the model's noise "
                f"type is {sde.noise_type!r}" + (" (noise='sampling')" if sde.noise_type == "general" else "")
            )
        if bm is not None and self.solver in LEVY and getattr(bm, "levy_area_approximation", "none") == "none":
            return f"method={self.name!r} needs a Brownian motion with levy_area_approximation={LEVY[self.solver]!r}"
        return None

    def plan(self, model, save, **_):
        return "per save interval, shared BrownianInterval"

    def memory(self, model, save, itemsize, n_state=None, grid=None, **_):
        n = n_state or 1
        steps = 45 if grid is None else min(45, grid.total_steps)
        per_path = (
            (8 + steps) * n * itemsize
        )  # solver stages and outputs; the Brownian interval's cache (an upper bound)
        if getattr(model, "noise_kind", None) == "covariance":
            per_path += n * n * itemsize  # torchsde's additive noise forms the (D, D) diffusion matrix
        if getattr(model, "noise_kind", None) == "sampling":
            per_path += n * model.num_samples * itemsize  # the (D, N) general-noise diffusion matrix
        return Memory(0, per_path)

    def integrate(self, model, start, grid, rng, record, save, bm=None, rows=None, **_):
        sde = self._sde(model)
        y0 = start.full(rows, rng, start.dtype, rng.device)  # (B, *shape)
        shape, B = y0.shape, y0.shape[0]
        # interval ends from one tensor in the state's dtype, so torchsde never sees t > t1 by rounding
        ts = torch.tensor(grid.times, dtype=y0.dtype, device=y0.device)
        h_min = min((t1 - t0) / n for _, t0, t1, n, _ in grid.intervals())
        blocks = [(slice(0, B), None)] if bm is not None else rng.per_block()
        bms = []
        for r, gen in blocks:
            if bm is not None:  # a user Brownian motion of the whole run (simulate runs it as one chunk)
                bms.append(bm)
                continue
            n = r.stop - r.start
            entropy = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
            bms.append(
                torchsde.BrownianInterval(
                    t0=float(ts[0]),
                    t1=float(ts[-1]),
                    size=(n, model.brownian_size),
                    dtype=y0.dtype,
                    device=y0.device,
                    levy_area_approximation=LEVY.get(self.solver, "none"),
                    entropy=entropy,
                    dt=h_min,  # a balanced tree of depth log2(T / dt): no recursion limit for long runs
                    cache_size=None if grid.total_steps * n * y0[0].numel() * y0.element_size() < 2**27 else 45,
                )
            )
        y = [y0[r].reshape(r.stop - r.start, -1) for r, _ in blocks]
        record(0, state=y0)
        for i, _t0, _t1, _n, h in grid.intervals():
            t01 = ts[i : i + 2]
            with torch.no_grad():
                y = [torchsde.sdeint(sde, yb, t01, bm=b, method=self.solver, dt=h)[-1] for yb, b in zip(y, bms)]
            record(i + 1, state=torch.cat(y).view(shape))
