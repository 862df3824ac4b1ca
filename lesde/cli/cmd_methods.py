"""``lesde methods``: the integration methods :func:`lesde.simulate` accepts."""

from __future__ import annotations


def add_parser(sub) -> None:
    s = sub.add_parser("methods", help="list the integration methods")
    s.set_defaults(fn=run)


def run(args) -> None:
    from ..integrators import known_methods

    print("\n".join(known_methods()))


__all__ = ["add_parser", "run"]
