"""``lesde methods``: the integration methods `lesde.simulate` accepts, each with its orders and what it takes
(`lesde.integrators.describe`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    s = sub.add_parser("methods", help="list the integration methods with their orders and what each supports")
    s.set_defaults(fn=run)


def run(args) -> None:
    from ..integrators import describe, known_methods

    names = known_methods()
    width = max(map(len, names))
    print("method=NAME of lesde.simulate and [simulate] method; orders for the LE-SDE's state-independent noise")
    for name in names:
        print(f"  {name:<{width}}  {describe(name)}")


__all__ = ["add_parser", "run"]
