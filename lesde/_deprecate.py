"""Old spellings of renamed keyword arguments, accepted with a DeprecationWarning."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: ``@renamed_kwargs(K="num_classes")`` lets callers still write ``K=...`` (with a warning).

    >>> @renamed_kwargs(runs="n_runs")
    ... def f(n_runs=1):
    ...     return n_runs
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     f(runs=3), w[0].category.__name__
    (3, 'DeprecationWarning')
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            used = [old for old in renames if old in kwargs]
            for old in used:
                new = renames[old]
                if new in kwargs:
                    raise TypeError(f"{fn.__name__}() got both {old}= (the old name) and {new}=; pass only {new}=")
                kwargs[new] = kwargs.pop(old)
            if used:  # one warning per call, naming every old spelling used
                olds = ", ".join(f"{old}=..." for old in used)
                news = ", ".join(f"{renames[old]}=..." for old in used)
                warnings.warn(f"{fn.__name__}({olds}) is deprecated; use {news}", DeprecationWarning, stacklevel=2)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
