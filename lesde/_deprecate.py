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
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got both {old}= (the old name) and {new}=; pass only {new}=")
                    warnings.warn(
                        f"{fn.__name__}({old}=...) is deprecated; use {new}=...", DeprecationWarning, stacklevel=2
                    )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
