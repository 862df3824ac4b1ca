"""Seeds that belong to cells: a cell draws its random numbers from a seed made of the run's seed and the cell's
own key (its grid values, its setting and run), so its numbers do not depend on which other cells exist, how cells
are batched, which are already done, or on which process or machine a cell runs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

__all__ = ["key_seed", "SEEDING"]

#: how :func:`key_seed` derives a seed, as stores record it
SEEDING = "numpy SeedSequence([seed, *uint32 words of sha256(canonical JSON of the cell's key)])"


def key_seed(seed: int, key: Any) -> int:
    """``SeedSequence([seed, *uint32 words of sha256(key as canonical JSON)])`` -> one uint32.

    ``key`` is anything JSON can write (numbers, strings, lists, dicts; dict keys are sorted), e.g. a sweep cell's
    sorted ``(grid key, value)`` pairs or an experiment cell's ``{"setting": ..., "run": r}``.

    Examples
    --------
    >>> from lesde.cells import key_seed
    >>> a = key_seed(0, {"setting": {"label_noise": 0.2}, "run": 1})
    >>> a == key_seed(0, {"run": 1, "setting": {"label_noise": 0.2}}), a == key_seed(0, {"setting": {}, "run": 1})
    (True, False)
    """
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    words = np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint32)
    entropy = [int(seed), *map(int, words)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])
