"""``lesde example list`` and ``lesde example copy NAME [DIR] [--force]``: the shipped examples."""

from __future__ import annotations

from .console import QUIET


def add_parser(sub) -> None:
    """The ``example`` subcommand and its two actions, on the subparsers ``sub`` of ``lesde``."""
    s = sub.add_parser("example", help="list the shipped examples or copy one (TOML configs and scripts)")
    actions = s.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(s))
    actions.add_parser("list", help="each example's name and one line about it", description="list the examples")
    c = actions.add_parser("copy", help="copy an example into a folder", description="copy an example")
    c.add_argument(
        "name", metavar="NAME", help="an example's name from `lesde example list` (the suffix may be left off)"
    )
    c.add_argument("dir", nargs="?", default=".", metavar="DIR", help="folder (or file path) to copy it to")
    c.add_argument("--force", action="store_true", help="overwrite an existing file")
    c.add_argument("--quiet", action="store_true", help=QUIET)
    s.set_defaults(fn=run)


def run(args) -> int:
    from ..examples import copy, describe, names

    if args.action == "list":
        width = max(map(len, names()))
        for name in names():
            print(f"{name:<{width}}  {describe(name)}")
        return 0
    print(f"wrote {copy(args.name, args.dir, force=args.force)}")
    return 0


__all__ = ["add_parser", "run"]
