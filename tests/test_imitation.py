"""imitate: the LE-SDE's class frequencies are the training set's, the scale-free comparisons and the frozen-network
null by direct computation, the verdicts, and the paper's reference row."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import lesde
from lesde.empirical import FitResult, ParamFit, imitate, load_dataset, mlp, simulate_discrete, track
from lesde.empirical.imitation_scores import centred_cosine, gram_distance, ncm_accuracy, separation_time, verdict


def _const_fit(alpha, beta, noise=0.0):
    def pf(q, v):
        return ParamFit(q, "const", {"value": v}, {"value": 0.0}, 0.0, 2.0, 10)

    return FitResult({"alpha": pf("alpha", alpha), "beta": pf("beta", beta)}, noise)


def _track(probes):
    x, y = load_dataset("gaussian-mixture", classes=3, per_class=10, dim=4, seed=1)  # balanced: 10 per class
    return track(mlp(4, 3, width=6), x, y, lr=0.05, steps=20, n_runs=2, probes=probes, progress=False)


def _euler_means(M0, alpha, beta, pi, lr, n):
    """The identity LE-ODE's class means after n Euler steps of dt = lr: M <- M + lr E diag(pi) M."""
    K = len(pi)
    A = (beta + (alpha - beta) * np.eye(K)) * np.asarray(pi)[None, :]
    return np.linalg.matrix_power(np.eye(K) + lr * A, n) @ M0


def test_class_frequencies_are_the_training_sets_not_the_probes():
    """Probes 3/5/4 of a balanced training set: the LE-SDE weighs classes 1/3 each, as with 4/4/4 probes, and its
    class means follow the LE-ODE with those weights (not with the probe shares)."""
    unequal = _track([0, 1, 2, 10, 11, 12, 13, 14, 20, 21, 22, 23])
    equal = _track([0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23])
    kw = dict(noise=0.0, max_times=21, reference=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a tiny network the constant E does not imitate
        im_u, im_e = imitate(unequal, _const_fit(3.0, -1.0), **kw), imitate(equal, _const_fit(3.0, -1.0), **kw)
    for im in (im_u, im_e):
        assert json.loads(im.attrs["class_probs"]) == pytest.approx([1 / 3] * 3)
        assert im.attrs["class_probs_from"] == "the training set's class_counts"
    assert json.loads(im_u.attrs["samples_per_class"]) == [3, 5, 4]
    M = im_u.class_mean.sel(process="le-sde").isel(run=0).values  # (T, K, m)
    n = int(im_u.step[-1])
    np.testing.assert_allclose(M[-1], _euler_means(M[0], 3.0, -1.0, [1 / 3] * 3, 0.05, n), rtol=1e-10)
    wrong = _euler_means(M[0], 3.0, -1.0, [3 / 12, 5 / 12, 4 / 12], 0.05, n)
    assert np.abs(M[-1] - wrong).max() > 1e-3 * np.abs(M[-1]).max()


def test_comparison_kernels_by_hand():
    rng = np.random.default_rng(0)
    M0 = rng.normal(size=(3, 2))
    C0 = M0 - M0.mean(0)
    M1 = M0 + np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])  # a centred displacement
    net = np.stack([M0, M1])[None]  # (1, T=2, K, m)
    same_direction = np.stack([M0, M0 + 0.3 * (M1 - M0)])[None]
    frozen = np.stack([M0, M0])[None]
    assert centred_cosine(same_direction, net)[0, 1] == pytest.approx(1.0)
    assert centred_cosine(frozen, net)[0, 1] == 0.0  # a process that does not move: the null's 0
    opposite = np.stack([M0, M0 - (M1 - M0)])[None]
    assert centred_cosine(opposite, net)[0, 1] == pytest.approx(-1.0)
    G0, G1 = C0 @ C0.T, (M1 - M1.mean(0)) @ (M1 - M1.mean(0)).T
    expect = np.linalg.norm(G0 / np.linalg.norm(G0) - G1 / np.linalg.norm(G1))
    assert gram_distance(frozen, net)[0, 1] == pytest.approx(expect)
    assert gram_distance(5.0 * net, net)[0, 1] == pytest.approx(0.0, abs=1e-12)  # scale-free
    F = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [0.4, 0.5]])
    # class means (0.05, 0) and (0.7, 0.75): probe (0.4, 0.5) of class 1 is nearer class 1's mean, all correct
    assert ncm_accuracy(F, np.array([0, 0, 1, 1]), 2) == 1.0
    assert ncm_accuracy(F, np.array([0, 1, 1, 0]), 2) < 1
    t = np.array([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(separation_time(np.array([[0.5, 0.9, 1.0, 1.0], [0.5] * 4]), t, 1.0), [2.0, np.inf])


def test_verdict_is_the_skill_against_the_frozen_network():
    D_null = np.array([[0.0, 1.0, 2.0, 3.0]])
    assert verdict("gram_distance", 0.4 * D_null, D_null)[2:] == (pytest.approx(0.6), "imitates")
    assert verdict("gram_distance", 0.7 * D_null, D_null)[3] == "partly"
    assert verdict("gram_distance", 0.9 * D_null, D_null)[3] == "no better than the frozen network"  # skill 0.1
    assert verdict("gram_distance", 1.3 * D_null, D_null)[3] == "no better than the frozen network"
    assert verdict("separation_time", np.array([np.log(1.5)]), np.array([np.nan]))[3] == "imitates"
    assert verdict("separation_time", np.array([np.log(3.0)]), np.array([np.nan]))[3] == "does not imitate"
    assert verdict("separation_time", np.array([np.nan]), np.array([np.nan]))[3].startswith("not judged")


def test_imitation_of_an_le_process_scores_and_nulls(tmp_path):
    """On the discrete LE process the LE-SDE with the true E imitates in the scale-free terms; the frozen null's
    rows are the network's own t = 0 values, its cosine 0; the paper's reference row is there with its scale."""
    model = lesde.LESDE(3, 3, 10, alpha=1.2, beta=0.3, noise=0.05)
    ds = simulate_discrete(model, lr=0.002, steps=1500, n_runs=3, seed=2, dtype=torch.float64)
    im = imitate(ds, _const_fit(1.2, 0.3, 0.05), paths_per_run=4, max_times=31)
    net = im.class_mean.sel(process="network").values
    np.testing.assert_allclose(im.class_mean.sel(process="frozen").values, np.broadcast_to(net[:, :1], net.shape))
    np.testing.assert_array_equal(im.centred_cosine.sel(process="frozen").values, 0.0)
    err_frozen = np.linalg.norm((net[:, :1] - net).reshape(3, 31, -1), axis=-1) / np.linalg.norm(
        net.reshape(3, 31, -1), axis=-1
    )
    np.testing.assert_allclose(im.class_mean_error.sel(process="frozen").values, err_frozen, rtol=1e-12)
    np.testing.assert_allclose(im.class_mean_error.sel(process="le-sde").values, im.relative_error.values)
    assert float(im.centred_cosine.sel(process="le-sde").isel(time=slice(1, None)).median()) > 0.9
    skill = im.skill.sel(process="le-sde")
    assert float(skill.sel(comparison="centred_cosine")) > 0.5
    assert json.loads(im.attrs["verdict_centred_cosine"])["le-sde"] == "imitates"
    assert np.isfinite(im.attrs["reference_scale"]) and "means form" in im.attrs["reference"]
    assert np.isfinite(im.class_mean.sel(process="paper").values).all()
    assert float(im.discrepancy.sel(process="network", comparison="gram_distance")) == 0.0
    im.to_netcdf(tmp_path / "im.nc", engine="h5netcdf")


def test_a_diverging_le_sde_is_judged_not_refused():
    """An LE-SDE whose second moments overflow float64 (states near 1e150) gets NaN metrics and infinite
    discrepancies, and fails the verdicts, instead of stopping imitate; a reference that was not run is not judged."""
    model = lesde.LESDE(3, 3, 10, alpha=1.2, beta=0.3, noise=0.05)
    ds = simulate_discrete(model, lr=0.002, steps=500, n_runs=2, seed=2, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        im = imitate(ds, _const_fit(3000.0, 0.3, 0.05), max_times=11, reference=False)
    assert float(im.discrepancy.sel(process="le-sde", comparison="nc1")) == np.inf
    assert np.isnan(im.nc1_quotient.sel(process="le-sde").isel(time=-1)).all()
    assert json.loads(im.attrs["verdict_nc1"]) == {"le-sde": "no better than the frozen network",
                                                   "paper": "not run (reference=False)"}  # fmt: skip
    assert np.isnan(im.skill.sel(process="paper")).all()
