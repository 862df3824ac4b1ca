"""What ``lesde estimate`` prints about one estimate: the track it came from, the estimate per window with both
estimands side by side, the answer line and the fit."""

from __future__ import annotations


def count(n: int, word: str) -> str:
    """'1 step', '3 steps'."""
    return f"{n} {word}" if int(n) == 1 else f"{n} {word}s"


#: what each weighting (estimand) is, as the elasticity figure's legend names it
WEIGHTINGS = {
    "increment": "increment weighting: the least-squares drift coefficient of the window (summed increments over "
    "summed regressor norms; what lesde imitate needs)",
    "step": "step weighting: the mean over the window's steps of each step's own coefficient (the typical step)",
}


def estimate_rows(est) -> list[str]:
    import numpy as np

    both = "alpha_by_weighting" in est
    weightings = ("increment", "step") if both else (est.attrs.get("weighting", "increment"),)
    cluster = est.attrs.get("se_cluster", "run")
    rows = [
        f"  per window (time t = its mean training time step x lr), estimate +- one standard error (clustered by "
        f"{cluster}); the columns are alpha_t and beta_t under each weighting, as the elasticity figure names them:",
        *(f"    {WEIGHTINGS[w]}" for w in weightings if w in WEIGHTINGS),
        (
            f"{'  window time':<16}" + "".join(f"{f'{q} ({w})':<23}" for q in ("alpha", "beta") for w in weightings)
        ).rstrip(),
    ]
    for i in np.unique(np.linspace(0, est.sizes["step"] - 1, 6).round().astype(int)):
        w = est.isel(step=i)
        if both:
            cells = [
                f"{float(w[f'{q}_by_weighting'].sel(weighting=k)):+10.4g} +- "
                f"{float(w[f'{q}_by_weighting_se'].sel(weighting=k)):<7.2g}"
                for q in ("alpha", "beta")
                for k in weightings
            ]
        else:
            cells = [f"{float(w[q]):+10.4g} +- {float(w[f'{q}_se']):<7.2g}" for q in ("alpha", "beta")]
        rows.append(f"  t={float(w.time):10.4g}  " + "  ".join(cells))
    if both:
        ratio = {
            k: float(np.nanmedian(est.alpha_by_weighting.sel(weighting=k) / est.beta_by_weighting.sel(weighting=k)))
            for k in weightings
        }
        excluded = int(est.attrs.get("excluded_steps", 0))
        rows.append(
            f"  median alpha/beta over windows: increment weighting {ratio['increment']:.3g}, step weighting "
            f"{ratio['step']:.3g} (reported as alpha, beta: {est.attrs['weighting']} weighting; "
            f"{count(excluded, 'step')} at rounding level dropped)"
        )
    return rows


def estimate_summary(est, fr, tr) -> str:
    acc = tr["accuracy"]
    done = int(tr.attrs.get("steps_completed", tr.attrs["steps"]))  # fewer when Ctrl-C stopped the track
    return "\n".join(
        [
            f"tracked {count(tr.sizes['run'], 'run')} x {count(done, 'step')} x "
            f"{count(tr.sizes['probe'], 'probe')} (lr={tr.attrs['lr']}, feature={tr.attrs['feature']}, "
            f"engine={tr.attrs.get('engine')}); probe accuracy "
            f"{float(acc.isel(step=0).mean()):.3f} -> {float(acc.isel(step=-1).mean()):.3f}",
            f"estimate (form={est.attrs['form']}, transform={est.attrs.get('transform')}, window="
            f"{count(int(est.attrs['window']), 'step')}):",
            *estimate_rows(est),
            "answer: " + est.attrs["answer"],
            "fit: " + fr.summary().replace("\n", "\n     "),
            f"residual diffusion sigma_hat = {fr.noise:.4g}",
        ]
    )


def interrupted_note(tr) -> str:
    """'interrupted after step 3553 of 12000' for a track stopped by Ctrl-C."""
    return f"interrupted after step {int(tr.attrs['steps_completed'])} of {int(tr.attrs['steps'])}"


def label_noise_table(ds) -> str:
    """The label-corruption experiment's table: per rate, the tail indices with their intervals and accuracies."""
    level = f"{100 * float(ds.attrs.get('tail_confidence', 0.95)):g}%"
    lines = [
        f"label corruption on {ds.attrs['dataset']} ({ds.attrs['net_desc']}, form={ds.attrs['form']}):",
        f"  tail index r: mean over {ds.sizes['run']} runs [{level} interval from their spread] (the figure's "
        "numbers); pooled: from the estimate over all runs",
        "  rate   r(alpha) [interval]        r(beta) [interval]         pooled a / b     validation acc   train acc "
        "(corrupted labels)",
    ]
    for p in ds.rate.values:
        d = ds.sel(rate=p)
        cells = [
            f"{float(d[f'tail_{q}_mean']):6.3f} "
            f"[{float(d[f'tail_{q}_ci_low']):6.3f}, {float(d[f'tail_{q}_ci_high']):6.3f}]"
            for q in ("alpha", "beta")
        ]
        lines.append(
            f"  {p:5.3f}  {cells[0]}  {cells[1]}  {float(d.tail_alpha_pooled):6.3f} / {float(d.tail_beta_pooled):6.3f}"
            f"  {float(d.validation_accuracy.mean()):14.3f}   {float(d.train_accuracy.mean()):.3f}"
        )
    return "\n".join(lines)
