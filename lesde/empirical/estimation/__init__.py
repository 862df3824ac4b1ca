"""Estimating E(t) from a track: the regression forms, the integrated means form, pooled with clustered errors."""

from __future__ import annotations

from .estimates import FORMS, WEIGHTINGS, estimate

__all__ = ["estimate", "FORMS", "WEIGHTINGS"]
