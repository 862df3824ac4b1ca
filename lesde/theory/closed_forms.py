"""Closed-form and numerical predictions of unconstrained-features models.

- `simplex_etf`: the K-point simplex equiangular tight frame in R^m.
- `tirer_bruna`: the minimizer of the regularized MSE UFM (Tirer and Bruna), with
  `ufm_mse_loss` and the optimal classifier for fixed features `optimal_classifier`.
- `mse_decomposition`: Han, Papyan and Donoho's L = L_NC1 + L_NC2/3 + L_perp (Theorems 1-2).
- `central_path_snr`: the SNR singular values along the continually renormalized flow (Han, Papyan and Donoho 2022, Prop. 2).
- `softmax_code`, `one_vs_rest_distance`: in `lesde.theory.softmax_codes`.
- The training problem these predictions describe is `lesde.sgd.UFM` (training lives above theory's
  closed forms, so it is not imported here); the least-squares classifier is `lesde.metrics.least_squares_classifier`.

Decisions (written down because the sources leave them open):

- ``simplex_etf(K, m)`` lives in the first K-1 coordinates (Helmert basis of the complement of 1_K), zero-padded.
- ``tirer_bruna`` returns the minimizer with Hbar = sqrt(rho) [I_K; 0] (minimizers are unique only up to a
  rotation of R^d); H orders samples class by class, like every lesde model.
- ``optimal_classifier`` takes n = N / K samples per class (balanced UFM, as in the loss).
- ``mse_decomposition`` follows Han, Papyan and Donoho 2022, Eq. 6 exactly: the bias is part of the extended classifier
  W~ = [W, b], so weight decay lambda applies to b too; targets are one-hot. Han, Papyan and Donoho's Proposition 1 prints
  W~_LS = (1/C) M~^T (Sigma~_T + lambda I)^{-1}; the first-order condition (its Eq. 14) actually gives the
  uncentred second moment Sigma~_T + mu~_G mu~_G^T (the matrix that appears in L_perp), which is what we use.
  With imbalanced classes the averages are over samples, so L_NC2/3 = (1/2) sum_c pi_c ||W~_LS mu~_c - e_c||^2
  (= (1/2C) ||W~_LS M~ - I||_F^2 when balanced). With lambda = 0 and a singular second moment W~_LS is the
  minimum-norm solution (pseudo-inverse); the decomposition still holds exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..metrics.inputs import check_labels, finite_features, shapes_message
from ..validation import as_tensor, check_int, check_positive_float

__all__ = [
    "simplex_etf",
    "tirer_bruna",
    "ufm_mse_loss",
    "optimal_classifier",
    "mse_decomposition",
    "central_path_snr",
]


# ----------------------------------------------------------------------------------------------------------------
# simplex ETF and the regularized MSE UFM


def simplex_etf(K: int, m: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The simplex equiangular tight frame: K unit vectors in R^m with pairwise cosine -1/(K-1).

    $$ M = \\sqrt{K/(K-1)}\\, V, \\qquad V V^\\top = I_K - \\tfrac1K 1 1^\\top, $$

    with V the (K, K-1) Helmert basis of the complement of 1_K, zero-padded to m columns.

    Returns
    -------
    torch.Tensor
        Shape (K, m). Rows sum to zero.

    Examples
    --------
    >>> from lesde.theory import simplex_etf
    >>> M = simplex_etf(3, 2)
    >>> round(float(M[0] @ M[1]), 12)
    -0.5
    """
    K = check_int("K", K, minimum=2)
    m = check_int("m", m, minimum=1)
    if m < K - 1:
        raise ValueError(f"a simplex ETF of K={K} points needs m >= K - 1 = {K - 1} dimensions, got m={m}")
    V = torch.zeros(K, m, dtype=dtype)
    for j in range(1, K):  # column j-1: (1, ..., 1, -j, 0, ...) / sqrt(j (j+1)), orthonormal and orthogonal to 1
        V[:j, j - 1] = 1.0 / math.sqrt(j * (j + 1))
        V[j, j - 1] = -j / math.sqrt(j * (j + 1))
    return V * math.sqrt(K / (K - 1))


def tirer_bruna(num_classes: int, samples_per_class: int, dim: int, lambda_W: float, lambda_H: float) -> dict[str, Any]:
    """Global minimizer of the regularized MSE unconstrained-features model (Tirer and Bruna 2022, Thm 3.1).

    $$ \\min_{W, H} \\frac{1}{2Kn}\\|WH - Y\\|_F^2 + \\frac{\\lambda_W}{2K}\\|W\\|_F^2
    + \\frac{\\lambda_H}{2Kn}\\|H\\|_F^2,\\qquad Y = I_K \\otimes 1_n^\\top . $$

    With $c = \\sqrt{\\lambda_H \\lambda_W} < 1$ every minimizer has $H = \\bar H \\otimes 1_n^\\top$,
    $\\bar H^\\top \\bar H = \\rho I_K$, $\\rho = (1-c)\\sqrt{\\lambda_W/\\lambda_H}$,
    $W^\\top = \\sqrt{\\lambda_H/\\lambda_W}\\, \\bar H$, hence $W \\bar H = (1-c) I_K$.
    For $c \\ge 1$ the minimizer is (0, 0).

    Parameters
    ----------
    num_classes : int
        K, n and the feature dimension d >= K: the names of `lesde.sgd.UFM`. ``UFM.from_tirer_bruna``
        with the same five arguments builds the training problem whose objective is this one.
    samples_per_class : int
        Described with `num_classes` above.
    dim : int
        Described with `num_classes` above.
    lambda_W : float
        The regularisation strengths of the objective above.
    lambda_H : float
        Described with `lambda_W` above.

    Returns
    -------
    dict[str, Any]
        dict with ``rho`` (float), ``W`` (K, d), ``Hbar`` (d, K), ``H`` (d, K n), ``collapsed`` (bool: c >= 1, the
        zero solution) and ``c`` (float). The returned minimizer is the one with Hbar = sqrt(rho) [I_K; 0].
    """
    K = check_int("num_classes", num_classes, minimum=2)
    n = check_int("samples_per_class", samples_per_class, minimum=1)
    d = check_int("dim", dim, minimum=1)
    if d < K:
        raise ValueError(f"tirer_bruna needs dim >= num_classes (d >= K); got dim={d}, num_classes={K}")
    lw = check_positive_float("lambda_W", lambda_W)
    lh = check_positive_float("lambda_H", lambda_H)
    c = math.sqrt(lw * lh)
    collapsed = c >= 1.0
    rho = 0.0 if collapsed else (1.0 - c) * math.sqrt(lw / lh)
    Hbar = torch.zeros(d, K, dtype=torch.float64)
    Hbar[:K, :K] = math.sqrt(rho) * torch.eye(K, dtype=torch.float64)
    W = math.sqrt(lh / lw) * Hbar.T.clone()  # (K, d)
    H = Hbar.repeat_interleave(n, dim=1)  # (d, K n): class-major, like Hbar (x) 1_n^T
    return {"rho": rho, "W": W, "Hbar": Hbar, "H": H, "collapsed": collapsed, "c": c}


def ufm_mse_loss(W: torch.Tensor, H: torch.Tensor, Y: torch.Tensor, lambda_W: float, lambda_H: float) -> torch.Tensor:
    """Regularized MSE UFM loss, batched over leading dims.

    $$ \\frac{1}{2Kn}\\|WH - Y\\|_F^2 + \\frac{\\lambda_W}{2K}\\|W\\|_F^2 + \\frac{\\lambda_H}{2Kn}\\|H\\|_F^2 $$

    with W (..., K, d), H (..., d, N), Y (K, N) and Kn = N. Integer arrays are converted to float64; NaN and inf are
    refused.
    """
    W, H, Y = finite_features("W", W), finite_features("H", H), finite_features("Y", Y)
    lambda_W = check_positive_float("lambda_W", lambda_W, allow_zero=True)
    lambda_H = check_positive_float("lambda_H", lambda_H, allow_zero=True)
    if Y.ndim != 2 or W.shape[-2] != Y.shape[0] or W.shape[-1] != H.shape[-2] or H.shape[-1] != Y.shape[1]:
        raise ValueError(shapes_message("W (..., K, d), H (..., d, N), Y (K, N)", W=W, H=H, Y=Y))
    dtype = torch.promote_types(torch.promote_types(W.dtype, H.dtype), Y.dtype)
    W, H, Y = W.to(dtype), H.to(dtype), Y.to(dtype)
    K, N = Y.shape[-2], Y.shape[-1]
    fit = ((W @ H - Y) ** 2).sum((-2, -1))
    return fit / (2 * N) + lambda_W / (2 * K) * (W**2).sum((-2, -1)) + lambda_H / (2 * N) * (H**2).sum((-2, -1))


def optimal_classifier(H: torch.Tensor, Y: torch.Tensor, lambda_W: float) -> torch.Tensor:
    """Minimizer over W of `ufm_mse_loss` for fixed features (Tirer and Bruna).

    Setting the W-gradient $\\frac{1}{Kn}(WH - Y)H^\\top + \\frac{\\lambda_W}{K} W$ to zero and multiplying
    by Kn gives

    $$ W^*(H) = Y H^\\top (H H^\\top + n \\lambda_W I_d)^{-1},\\qquad n = N / K, $$

    so the factor n comes from the loss normalizing the fit by Kn but the penalty on W only by K.
    H (..., d, N), Y (K, N) -> W (..., K, d). ``lambda_W = 0`` uses the pseudo-inverse (minimum-norm solution).
    Integer arrays are converted to float64; NaN and inf are refused.
    """
    lw = check_positive_float("lambda_W", lambda_W, allow_zero=True)
    H, Y = finite_features("H", H), finite_features("Y", Y)
    if Y.ndim != 2 or H.shape[-1] != Y.shape[1]:
        raise ValueError(shapes_message("H (..., d, N) and Y (K, N) with the same N", H=H, Y=Y))
    K, N = Y.shape[-2], Y.shape[-1]
    Y = Y.to(H.dtype)
    gram = H @ H.transpose(-1, -2)  # (..., d, d)
    rhs = H @ Y.transpose(-1, -2)  # (..., d, K)
    if lw == 0:
        return (torch.linalg.pinv(gram, hermitian=True) @ rhs).transpose(-1, -2)
    eye = torch.eye(gram.shape[-1], dtype=H.dtype, device=H.device)
    return torch.linalg.solve(gram + (N / K) * lw * eye, rhs).transpose(-1, -2)


# ----------------------------------------------------------------------------------------------------------------
# the MSE loss decomposition (Han, Papyan and Donoho 2022)


def mse_decomposition(
    features: torch.Tensor, labels: torch.Tensor, W: torch.Tensor, b: torch.Tensor, weight_decay: float = 0.0
) -> dict[str, torch.Tensor]:
    """Han, Papyan and Donoho's decomposition of the MSE loss (Theorems 1-2).

    With extended features $\\tilde h = [h; 1]$, extended classifier $\\tilde W = [W, b]$, one-hot
    targets and weight decay $\\lambda$,

    $$ \\mathcal L(\\tilde W) = \\tfrac12 \\mathrm{Ave}_i \\|\\tilde W \\tilde h_i - y_i\\|^2
        + \\tfrac{\\lambda}{2}\\|\\tilde W\\|_F^2
    = \\underbrace{\\tfrac12 \\mathrm{tr}\\{\\tilde W_{LS}(\\tilde\\Sigma_W + \\lambda I)\\tilde W_{LS}^\\top\\}}_{L_{NC1}}
    + \\underbrace{\\tfrac12 \\textstyle\\sum_c \\pi_c \\|\\tilde W_{LS}\\tilde\\mu_c - e_c\\|^2}_{L_{NC2/3}}
    + \\underbrace{\\tfrac12 \\mathrm{tr}\\{(\\tilde W - \\tilde W_{LS}) (\\tilde\\Sigma_T + \\tilde\\mu_G
        \\tilde\\mu_G^\\top + \\lambda I)(\\tilde W - \\tilde W_{LS})^\\top\\}}_{L_\\perp}, $$

    where $\\tilde W_{LS} = \\mathrm{Ave}_i\\, y_i \\tilde h_i^\\top\\, (\\mathrm{Ave}_i \\tilde h_i
    \\tilde h_i^\\top + \\lambda I)^{-1}$ minimizes the loss for the given features (balanced classes:
    $\\tfrac1C \\tilde M^\\top(\\tilde\\Sigma_T + \\tilde\\mu_G\\tilde\\mu_G^\\top + \\lambda I)^{-1}$) and
    $L_{LS} = L_{NC1} + L_{NC2/3}$ is the loss of that classifier.

    Parameters
    ----------
    features : (..., N, m); labels : (N,) ints 0..K-1; W : (..., K, m); b : (..., K); weight_decay : lambda >= 0.
        Integer features, W and b are converted to float64; NaN and inf are refused.

    Returns
    -------
    dict[str, torch.Tensor]
        dict of tensors with the leading dims: ``L_NC1``, ``L_NC2_3``, ``L_perp``, ``L_LS`` (the loss of
        W~_LS computed directly, equal to L_NC1 + L_NC2_3), ``total`` (the loss of (W, b) computed directly, equal to
        L_LS + L_perp), and the classifier ``W_LS`` (..., K, m), ``b_LS`` (..., K).
    """
    lam = check_positive_float("weight_decay", weight_decay, allow_zero=True)
    H = finite_features("features", features)
    N, m = H.shape[-2], H.shape[-1]
    labels, K, counts = check_labels(labels, N, H.device)
    W, b = finite_features("W", W), finite_features("b", b, ndim=1)
    if W.shape[-2:] != (K, m) or b.shape[-1] != K:
        raise ValueError(shapes_message(f"W (..., K={K}, m={m}) and b (..., K={K}) for these features", W=W, b=b))
    Yt = torch.nn.functional.one_hot(labels, K).to(H.dtype)  # (N, K)
    counts = counts.to(H.dtype)
    pi = counts / N  # (K,)
    ones = torch.ones(*H.shape[:-1], 1, dtype=H.dtype, device=H.device)
    Ht = torch.cat([H, ones], dim=-1)  # (..., N, m+1) extended features
    Wt = torch.cat([W.to(H.dtype), b.to(H.dtype)[..., None]], dim=-1)  # (..., K, m+1)

    second = Ht.transpose(-1, -2) @ Ht / N  # (..., m+1, m+1) = Sigma~_T + mu~_G mu~_G^T
    cross = torch.einsum("nk,...np->...kp", Yt, Ht) / N  # (..., K, m+1) = Ave y h~^T
    eye = torch.eye(m + 1, dtype=H.dtype, device=H.device)
    if lam > 0:
        W_ls = torch.linalg.solve(second + lam * eye, cross.transpose(-1, -2)).transpose(-1, -2)
    else:
        W_ls = cross @ torch.linalg.pinv(second, hermitian=True)  # minimum-norm solution of W S = cross

    means = torch.einsum("nk,...np->...kp", Yt, Ht) / counts[:, None]  # (..., K, m+1) extended class means
    dev = Ht - means[..., labels, :]  # (..., N, m+1): h~_i - mu~_{y_i} (last coordinate 0)
    sigma_w = dev.transpose(-1, -2) @ dev / N  # (..., m+1, m+1)

    def quad(A: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
        return 0.5 * (A @ S * A).sum((-2, -1))  # (1/2) tr(A S A^T)

    L_nc1 = quad(W_ls, sigma_w + lam * eye)
    resid_means = W_ls @ means.transpose(-1, -2) - torch.eye(K, dtype=H.dtype, device=H.device)  # (..., K, K)
    L_nc23 = 0.5 * ((resid_means**2).sum(-2) * pi).sum(-1)  # column c weighted by pi_c
    L_perp = quad(Wt - W_ls, second + lam * eye)

    def loss(A: torch.Tensor) -> torch.Tensor:
        pred = Ht @ A.transpose(-1, -2)  # (..., N, K)
        return 0.5 * ((pred - Yt) ** 2).sum(-1).mean(-1) + 0.5 * lam * (A**2).sum((-2, -1))

    return {
        "L_NC1": L_nc1,
        "L_NC2_3": L_nc23,
        "L_perp": L_perp,
        "L_LS": loss(W_ls),
        "total": loss(Wt),
        "W_LS": W_ls[..., :m],
        "b_LS": W_ls[..., m],
    }


# ----------------------------------------------------------------------------------------------------------------
# central path dynamics (Han, Papyan and Donoho 2022, Appendix D.4)


def central_path_snr(omega0: Any, C: float, N: float, t: Any) -> torch.Tensor:
    """SNR singular values along the continually renormalized gradient flow on the MSE central path.

    Each nonzero singular value obeys $\\dot\\omega = \\omega / (N (C + \\omega^2)^2)$, whose solution is
    the implicit equation (Han, Papyan and Donoho, Proposition 2; C classes, N samples per class)

    $$ F(\\omega) = C^2 N \\log\\omega + C N \\omega^2 + \\tfrac N4 \\omega^4 = a_j + t,
    \\qquad a_j = F(\\omega_j(0)). $$

    Solved by Newton's method on $s = \\log\\omega$ in float64: $G(s) = F(e^s)$ is increasing and
    convex, so Newton started above the root (an explicit upper bound from dropping terms) decreases
    monotonically to it and never overflows.

    Parameters
    ----------
    omega0 : array-like, positive
        Initial singular values, any shape S.
    C : positive numbers
        Number of classes and samples per class.
    N : positive numbers
        Described with `C` above.
    t : array-like
        Times, any shape T (negative times run the flow backwards; any real t has a solution).

    Returns
    -------
    torch.Tensor
        Float64, shape (*T, *S).
    """
    w0 = as_tensor("omega0", omega0)
    if bool((w0 <= 0).any()):
        raise ValueError("omega0 must be positive (nonzero singular values)")
    C = check_positive_float("C", C)
    N = check_positive_float("N", N)
    tt = as_tensor("t", t)

    def G(s: torch.Tensor) -> torch.Tensor:
        e2 = torch.exp(2 * s)
        return C * C * N * s + C * N * e2 + 0.25 * N * e2 * e2

    def dG(s: torch.Tensor) -> torch.Tensor:
        e2 = torch.exp(2 * s)
        return C * C * N + 2 * C * N * e2 + N * e2 * e2

    target = G(torch.log(w0)) + tt.reshape(*tt.shape, *([1] * w0.ndim))  # (*T, *S)
    # upper bound on the root: for T <= 0 the log term alone reaches T; for T > 0 any single term reaching T at
    # s >= 0 does (the other terms are then >= 0), and if such an s is negative, T < G(0) and s = 0 is above
    pos = target.clamp_min(1e-300)
    bound = torch.minimum(
        torch.minimum(pos / (C * C * N), 0.5 * torch.log(pos / (C * N))), 0.25 * torch.log(4 * pos / N)
    )
    s = torch.where(target > 0, bound.clamp_min(0.0), target / (C * C * N))
    for _ in range(200):
        step = (G(s) - target) / dG(s)
        s = s - step
        if bool((step.abs() <= 1e-15 * (1 + s.abs())).all()):
            break
    return torch.exp(s)
