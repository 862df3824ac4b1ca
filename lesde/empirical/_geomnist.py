r"""GeoMNIST: 32x32 grey images of triangles, rectangles and ellipses, generated locally (no download).

The LE-SDE paper's synthetic data set (Zhang, Wang and Su 2021), rebuilt from its description: one filled shape
per image, class 0 triangles, 1 rectangles, 2 ellipses, each drawn with a random rotation, a size jitter and a
small shift, then blurred with a Gaussian filter of random width. Shapes (for size 32, scaled with ``size``):
an isosceles triangle of base 20 and height about 22 (vertices ``(0, -8 sqrt 3)``, ``(+-10, 8)`` about the
image centre), a 8 x 16 rectangle, and an ellipse with semi-axes 6 and 12, as in the paper's generator.

Decisions: rotation uniform in [0, 180) degrees, size factor uniform in [1 - jitter, 1 + jitter] (default 0.1),
shift uniform in +-1 pixel per axis, blur sigma uniform in [0.9, 1.1] pixels; pixels are the shape's coverage of
a 2 x 2 supersampled grid, so edges are antialiased before the blur; values in [0, 1]. The train and test splits
come from independent streams of ``numpy.random.default_rng([generator_seed, split])``.
"""

from __future__ import annotations

import functools

import numpy as np

CLASSES = ("triangle", "rectangle", "ellipse")


def _inside(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether shape-frame points (u, v) (n, H, W) lie inside the shape of class ``kind`` (size-32 units)."""
    if kind == 0:  # triangle: three half-planes through its vertices
        P = np.array([[0.0, -8 * np.sqrt(3)], [10.0, 8.0], [-10.0, 8.0]])
        P -= P.mean(0)  # rotate about the centroid
        inside = np.ones(u.shape, bool)
        for a, b in ((0, 1), (1, 2), (2, 0)):
            (x1, y1), (x2, y2) = P[a], P[b]
            cross = (x2 - x1) * (v - y1) - (y2 - y1) * (u - x1)
            inside &= cross >= 0
        return inside
    if kind == 1:
        return (np.abs(u) <= 4) & (np.abs(v) <= 8)
    return (u / 6) ** 2 + (v / 12) ** 2 <= 1


@functools.lru_cache(maxsize=4)
def generate(per_class: int, split: int, generator_seed: int = 0, size: int = 32, jitter: float = 0.1):
    """(x (K n, 1, size, size) float32, y (K n,) int64) sorted by class."""
    rng = np.random.default_rng([int(generator_seed), int(split)])
    ss = 2  # supersampling
    g = (np.arange(size * ss) + 0.5) / ss - size / 2  # pixel-centre coordinates, origin at the image centre
    X, Y = np.meshgrid(g, g, indexing="xy")
    s32 = size / 32.0
    xs, ys = [], []
    for k in range(len(CLASSES)):
        n = per_class
        theta = np.deg2rad(rng.uniform(0, 180, n))[:, None, None]
        scale = s32 * rng.uniform(1 - jitter, 1 + jitter, n)[:, None, None]
        shift = rng.uniform(-1, 1, (2, n))[:, :, None, None] * s32
        blur = rng.uniform(0.9, 1.1, n)
        dx, dy = X[None] - shift[0], Y[None] - shift[1]
        u = np.cos(theta) * dx + np.sin(theta) * dy  # rotate the grid by -theta: the shape by +theta
        v = -np.sin(theta) * dx + np.cos(theta) * dy
        mask = np.zeros((n, size, size))
        for i0 in range(0, n, 256):  # bounded memory
            sl = slice(i0, i0 + 256)
            inside = _inside(k, u[sl] / scale[sl], v[sl] / scale[sl])
            mask[sl] = inside.reshape(-1, size, ss, size, ss).mean((2, 4))
        xs.append(_blur(mask, blur * s32)[:, None])
        ys.append(np.full(n, k, np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _blur(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian blur of each image (n, H, W) with its own sigma, as ``B_i img_i B_i^T`` with ``B_i`` the 1-D blur
    matrix (kernel truncated at 4 sigma, borders reflected as ``scipy.ndimage.gaussian_filter(mode="reflect")``):
    two batched matrix products for the whole stack, where scipy needs one call per sigma."""
    n, H, W = img.shape
    assert H == W
    r = int(np.ceil(4 * sigma.max()))
    off = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (off[None] / sigma[:, None]) ** 2) * (np.abs(off)[None] <= np.ceil(4 * sigma[:, None]))
    k /= k.sum(1, keepdims=True)  # (n, 2r + 1)
    src = np.arange(H)[:, None] + off[None]  # (H, 2r + 1), reflected into range (half-sample symmetric)
    src = np.where(src < 0, -src - 1, src)
    src = np.where(src >= H, 2 * H - src - 1, src)
    B = np.zeros((n, H, H))
    rows = np.broadcast_to(np.arange(H)[:, None], src.shape)
    for j in range(src.shape[1]):
        np.add.at(B, (slice(None), rows[:, j], src[:, j]), k[:, j : j + 1])
    return np.matmul(np.matmul(B, img), B.transpose(0, 2, 1)).astype(np.float32)


__all__ = ["generate", "CLASSES"]
