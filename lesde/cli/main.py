"""The ``lesde`` parser, assembled from one module per subcommand, and `main`, which turns every failure
into one line on stderr and an exit code (`lesde.cli.failures`)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from .. import __version__
from . import (
    cmd_compare_sgd,
    cmd_compare_theory,
    cmd_demo,
    cmd_estimate,
    cmd_example,
    cmd_imitate,
    cmd_methods,
    cmd_plot,
    cmd_simulate,
    cmd_sweep,
)
from .console import QUIET, reporting
from .failures import EXIT_INTERRUPTED, exit_code, known, one_line

#: the subcommands in the order ``lesde --help`` lists them
COMMANDS = (cmd_demo, cmd_simulate, cmd_sweep, cmd_plot, cmd_compare_sgd, cmd_estimate, cmd_imitate,
            cmd_compare_theory, cmd_methods, cmd_example)  # fmt: skip


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless the help already states it, or the option is required)."""

    def _get_help_string(self, action):
        help = action.help or ""
        if action.required or "default" in help.lower():
            return help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``lesde`` parser: each subcommand's ``add_parser`` adds it, and sets ``fn`` (what runs) and
    ``output`` (the output option and whether it names a file, a folder or a store, checked before the run)."""
    p = _Parser(
        prog="lesde",
        description="Locally elastic SDEs: simulate, sweep, estimate, compare.",
        epilog="Exit codes: 0 success, 1 a failed run, 2 bad input, 130 interrupted.",
        formatter_class=_Formatter,
    )
    p.add_argument("--version", action="version", version=f"lesde {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    _finish(sub)
    return p


def _finish(sub) -> None:
    """What every subcommand gets: a description, defaults in --help, --debug, and --quiet for every command that
    writes a file (it names an output) and does not define it."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, parser in sub.choices.items():
        parser.formatter_class = _Formatter
        if parser.description is None:
            parser.description = helps.get(name)
        if parser.get_default("output") is not None and "--quiet" not in parser._option_string_actions:
            parser.add_argument("--quiet", action="store_true", help=QUIET)
        for action in parser._actions:  # a positional's placeholder in the usage line: FILE, not file
            if not action.option_strings and action.metavar is None and action.dest != "help" and not action.choices:
                action.metavar = action.dest.upper()
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of a failure"
        )


def _prepare(args) -> None:
    """Checks before any run: the device, and the output path (its folders created, or the path refused)."""
    from ..validation import check_device
    from .files import prepare_output

    if getattr(args, "device", None) is not None:
        args.device = str(check_device(args.device, name="--device"))
    output = getattr(args, "output", None)
    if output is not None:
        option, kind = output
        prepare_output(option, getattr(args, option), kind)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lesde ARGV``; returns the exit code (0 success, 1 a failed run, 2 bad input, 130 interrupted)."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # from here on Ctrl-C is reported below
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"lesde {args.command}"
    try:
        with reporting(prefix, quiet=getattr(args, "quiet", False), debug=args.debug):
            _prepare(args)
            code = args.fn(args)
    except KeyboardInterrupt as e:
        if args.debug:
            raise
        detail = one_line(e) if str(e) else ""
        print(f"{prefix}: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - every failure becomes one line and an exit code
        if args.debug:
            raise
        msg = one_line(e)
        if not known(e):
            msg = f"{type(e).__name__}: {msg} (rerun with --debug for the traceback)"
        print(f"{prefix}: error: {msg}", file=sys.stderr)
        return exit_code(e)
    return int(code or 0)


__all__ = ["main", "build_parser", "COMMANDS"]
