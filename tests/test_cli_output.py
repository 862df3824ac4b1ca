"""What the ``lesde`` command prints: every subcommand on the shipped inputs says what it wrote, shows warnings as
one line without a source path, and --quiet drops only the 'wrote' lines; every argument is documented; the
tables name their columns as the figures do; the example scripts check their extras before any work."""

from __future__ import annotations

import argparse
import re
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from sweep_helpers import to_toml

import lesde.examples
from lesde import cli
from lesde.cli import cmd_demo
from lesde.config import load_toml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = Path(lesde.examples.__file__).parent
#: a Python source location as a warning's default form prints it ("/path/to/module.py:123:")
SOURCE = re.compile(r"\.py:\d+|Warning:")


def _run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _shrunk(name: str, folder: Path, **tables) -> Path:
    """A shipped example config copied into ``folder`` with some of its keys replaced (a seconds-long run)."""
    config = load_toml(EXAMPLES / name)
    for table, values in tables.items():
        config[table].update(values)
    path = folder / name
    path.write_text(to_toml(config))
    return path


@pytest.fixture(scope="module")
def small_demo():
    """The demo's own inputs, shrunk: two cells of the sweep, a short residual run."""
    keep = {k: getattr(cmd_demo, k) for k in ("DEMO_SPEC", "N_PATHS", "T_END", "DT", "N_SAVE")}
    cmd_demo.DEMO_SPEC = cmd_demo.demo_spec([0.5, 2.0], [2.0], simulate={"n_paths": 8, "t_end": 100.0,
                                                                        "save_times": [10.0, 100.0]})  # fmt: skip
    cmd_demo.N_PATHS, cmd_demo.T_END, cmd_demo.DT, cmd_demo.N_SAVE = 4, 1.0, 0.1, 6
    yield
    for k, v in keep.items():
        setattr(cmd_demo, k, v)


def _says_what_it_wrote(capsys, argv: list, files: list[Path]) -> str:
    """Run one command; check it printed 'wrote PATH' for each file and no stderr line from Python's warning
    machinery (a source path and line, 'SomeWarning:'); return its stderr."""
    code, out, err = _run(capsys, *argv)
    assert code == 0, (argv, err)
    lines = out.splitlines()
    for f in files:
        said = re.compile(f"wrote {re.escape(str(f))}($|[ :;])")
        assert f.exists() and any(said.match(line) for line in lines), (f, out)
    bad = [line for line in err.splitlines() if SOURCE.search(line)]
    assert not bad, (argv, bad)
    return err


def _commands(d: Path) -> dict[str, tuple[list, list[Path]]]:
    """Every writing subcommand on the shipped inputs (shrunk to seconds), in the order their inputs need, with
    the files each must say it wrote; then ``lesde plot`` of every kind on those files."""
    sim = _shrunk("simulate.toml", d, simulate={"t_end": 0.3, "n_paths": 3, "n_save": 4})
    sweep = _shrunk("phase_diagram.toml", d, simulate={"n_paths": 8, "t_end": 100.0, "save_times": [10.0, 100.0]},
                    grid={"model.alpha.exponent": [0.5, 2.0], "model.alpha.scale": [2.0]}, sweep={"time": 100.0})  # fmt: skip
    cmp = _shrunk("compare_sgd.toml", d, run={"t_end": 0.8, "n_runs": 2, "n_save": 3})
    est = ["--dataset", "digits", "--classes", "3", "--steps", "40", "--n-runs", "2", "--probes", "12", "--width", "8"]
    demo = [d / "demo" / f for f in ("phase.zarr", "phase.png", "residual.nc", "residual.png")]
    commands = {
        "demo": (["demo", "--out", d / "demo"], demo),
        "simulate": (["simulate", sim, "--out", d / "run.nc"], [d / "run.nc"]),
        "sweep": (["sweep", sweep, "--store", d / "s.zarr"], [d / "s.zarr"]),
        "compare-sgd": (["compare-sgd", cmp, "--out", d / "cmp.nc"], [d / "cmp.nc", d / "cmp.png"]),
        "estimate": (["estimate", *est, "--out", d / "est.nc"], [d / "est.nc", d / "est_elasticity.png"]),
        "imitate": (["imitate", d / "est.nc", "--out", d / "imit.nc"], [d / "imit.nc", d / "imit_trajectories.png"]),
        "compare-theory": (["compare-theory", d / "s.zarr", "--out", d / "th.nc"], [d / "th.nc"]),
        "example": (["example", "copy", "residual_collapse.py", d], [d / "residual_collapse.py"]),
    }
    sources = {"phase": "s.zarr", "nc": "cmp.nc", "cosines": "run.nc", "elasticity": "est.nc", "imitation": "imit.nc",
               "sgd": "cmp.nc", "theory": "th.nc"}  # fmt: skip
    for kind, src in sources.items():
        commands[f"plot {kind}"] = (["plot", kind, d / src, "--out", d / f"{kind}.png"], [d / f"{kind}.png"])
    return commands


@pytest.mark.slow  # every subcommand, the estimate and the demo included: about 25 s on a 2-core CPU
def test_every_subcommand_on_shipped_inputs_says_what_it_wrote_without_source_paths(tmp_path, capsys, small_demo):
    """Each writing command prints one 'wrote PATH' line per file; stderr holds progress bars, 'lesde CMD: warning:'
    lines and nothing from Python's warning machinery."""
    warned = set()
    for name, (argv, files) in _commands(tmp_path).items():
        err = _says_what_it_wrote(capsys, argv, files)
        warned |= {name for line in err.splitlines() if line.startswith(f"lesde {argv[0]}: warning: ")}
    assert "estimate" in warned  # a short track's fit warns: the warning reached the user, in one line
    for argv in (["methods"], ["example", "list"]):
        code, out, err = _run(capsys, *argv)
        assert code == 0 and out and not SOURCE.search(err)


def test_the_quick_subcommands_say_what_they_wrote_without_source_paths(tmp_path, capsys):
    """The seconds-long part of the test above, in the default run."""
    commands = _commands(tmp_path)
    for name in ("simulate", "sweep", "compare-theory", "example", "plot phase", "plot cosines"):
        _says_what_it_wrote(capsys, *commands[name])


def test_quiet_drops_the_wrote_lines_and_keeps_tables_and_warnings(tmp_path, capsys, monkeypatch):
    cmp = _shrunk("compare_sgd.toml", tmp_path, run={"t_end": 0.4, "n_runs": 2, "n_save": 2})
    code, out, err = _run(capsys, "compare-sgd", cmp, "--out", tmp_path / "cmp.nc", "--quiet")
    assert code == 0 and "wrote" not in out and "SGD vs SME vs gradient flow" in out and err == ""
    assert (tmp_path / "cmp.nc").is_file() and (tmp_path / "cmp.png").is_file()
    code, out, err = _run(capsys, "example", "copy", "simulate.toml", tmp_path, "--quiet")
    assert code == 0 and out == "" and (tmp_path / "simulate.toml").is_file()

    def warns(args):
        warnings.warn("first part\n  second part", UserWarning, stacklevel=1)
        print("wrote nothing.txt")

    monkeypatch.setattr(cli.main.__globals__["cmd_methods"], "run", warns)
    code, out, err = _run(capsys, "methods")
    assert code == 0 and out == "wrote nothing.txt\n"
    assert err == "lesde methods: warning: first part second part\n"  # one line, no path, no source line


def test_debug_leaves_warnings_to_python(capsys, monkeypatch):
    def warns(args):
        warnings.warn("look here", UserWarning, stacklevel=1)

    monkeypatch.setattr(cli.main.__globals__["cmd_methods"], "run", warns)
    with pytest.warns(UserWarning, match="look here"):  # Python's own machinery, with its file and line
        code, _, err = _run(capsys, "methods", "--debug")
    assert code == 0 and "lesde methods: warning" not in err


def test_the_real_command_prints_warnings_in_one_line(tmp_path):
    """In a process of its own (Python's warning filters, not pytest's): a command that warns."""
    from test_sweep import OLD_STORE  # saved at t = 0, 1, 10

    r = subprocess.run(
        [sys.executable, "-m", "lesde.cli", "plot", "phase", OLD_STORE, "--out", tmp_path / "p.png", "--time", "4"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [
        "lesde plot: warning: --time 4 is not a save time, used the nearest, t = 1 (store has t = 0, 1, 10)"
    ]
    assert r.stdout.strip() == f"wrote {tmp_path / 'p.png'}"


def _parsers():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        actions = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if actions:
            for action_name, q in actions[0].choices.items():
                yield f"{name} {action_name}", q
        yield name, p


def test_help_documents_every_argument():
    for name, p in _parsers():
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            text = action.help or ""
            assert len(text.split()) >= 3 and text != action.dest.replace("_", " "), (name, action.dest, text)
            if not action.option_strings and not action.choices:  # a placeholder saying what it is: FILE, CONFIG.toml
                assert action.metavar and action.metavar != action.dest, (name, action.dest)


def test_plot_help_says_which_file_each_kind_reads(capsys):
    code, out, _ = _run(capsys, "plot", "--help")
    assert code == 0
    text = " ".join(out.split())
    for kind, reads in lesde.plots.KINDS.items():
        assert f"{kind} {' '.join(reads.split())}" in text, kind


def test_every_writing_command_has_quiet():
    for name, p in _parsers():
        if p.get_default("output") is not None or name == "example copy":
            assert "--quiet" in p._option_string_actions, name


def test_methods_describes_each_method(capsys):
    from lesde.integrators import known_methods

    code, out, _ = _run(capsys, "methods")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == len(known_methods()) + 1 and "orders" in lines[0]
    for method, line in zip(known_methods(), lines[1:]):
        assert line.split()[0] == method and ("order" in line or "exact" in line) and len(line) > 60, line
    assert "refuses noise='sampling'" in next(line for line in lines if line.split()[0] == "torchsde:srk")


def test_the_demo_tables_name_what_the_figures_name():
    import numpy as np
    import xarray as xr

    from lesde.cli.cmd_demo import phase_table, residual_table

    table = "P(all pairs separable) at t = 10; rows alpha_scale, columns alpha_exponent\n alpha_scale |   0.5\n--\n 1 |  1.00"
    head, names = phase_table(table).splitlines()[:2]
    assert "scale c" in head and "exponent p" in head and "alpha_scale" not in phase_table(table)
    assert names.split("|")[0].strip() == "c \\ p"
    T = 3
    met = xr.Dataset({n: (("path", "time"), np.full((2, T), i + 1.0)) for i, n in enumerate(cmd_demo.RESIDUAL_PANELS)},
                     coords={"time": np.arange(T, dtype=float)})  # fmt: skip
    text = residual_table(met, np.full(T, 9.0), rows=T)
    assert "NC2: angle gap to the ETF, class means" in text and "worst pair" in text
    row = text.splitlines()[-1].split()
    assert [float(v) for v in row[1:]] == [1.0, 2.0, 3.0, 4.0, 9.0]  # the panels' medians, then the worst pair


def test_the_estimate_table_explains_its_columns_and_counts_in_words():
    from lesde.cli.estimate_summary import count as _count
    from lesde.cli.estimate_summary import estimate_rows as _estimate_rows

    assert (_count(1, "step"), _count(2, "step"), _count(0, "step")) == ("1 step", "2 steps", "0 steps")
    from test_plots import _estimate

    est = _estimate()
    est["alpha_se"], est["beta_se"] = 0.1 * est["alpha"], 0.1 * est["beta"]
    rows = _estimate_rows(est)
    assert any("increment weighting: the least-squares drift coefficient" in r for r in rows)
    assert "one standard error" in rows[0]


def test_sgd_vs_sde_checks_its_extra_before_any_work(monkeypatch):
    import lesde.sgd
    from lesde.extras import MissingExtra

    monkeypatch.setitem(sys.modules, "sklearn", None)  # not installed
    monkeypatch.setattr(lesde.sgd, "compare", lambda *a, **k: pytest.fail("the run started"))
    monkeypatch.setenv("LESDE_TINY", "1")
    with pytest.raises(MissingExtra, match=r"pip install 'lesde\[data\]'"):
        runpy.run_path(str(EXAMPLES / "sgd_vs_sde.py"), run_name="__main__")


def test_no_example_or_command_quotes_an_unmeasured_run_time():
    said = re.compile(r"(about|~|under|<)\s*(a|\d+)\s*(s\b|sec|min|minute|seconds)|two minutes", re.I)
    texts = {p.name: p.read_text() for p in [*EXAMPLES.glob("*.py"), *EXAMPLES.glob("*.toml")]}
    texts |= {p.name: p.read_text() for p in (REPO / "lesde" / "cli").glob("*.py")}
    for name, text in texts.items():
        assert not said.search(text), (name, said.search(text).group(0))
