"""Capture what each tutorial prints, cell by cell, for its page (docs/hooks.py shows it under the cell).

    python docs/capture_outputs.py [NAME ...]        # the full-size runs (what the pages' text quotes)
    LESDE_TUTORIAL_TINY=1 python docs/capture_outputs.py NAME   # a seconds-long run, labelled so on the page

Each script runs in a temporary folder (its files go there), its code cells in order in one namespace, with
MPLBACKEND=Agg; stdout is kept per code cell (progress bars go to stderr and are not kept). The result is
docs/tutorials/outputs/NAME.json: the outputs, the date, the machine, the size and the seconds it took.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import jupytext

DOCS = Path(__file__).resolve().parent
TUTORIALS = DOCS / "tutorials"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def capture(name: str) -> dict:
    script = TUTORIALS / f"{name}.py"
    cells = [c for c in jupytext.reads(script.read_text(), fmt="py:percent").cells if c.cell_type == "code"]
    outputs = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MPLBACKEND", "Agg")
        os.environ["LESDE_TUTORIAL_OUT"] = tmp
        namespace = {"__name__": "__main__", "__file__": str(script)}
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            for cell in cells:
                buffer = io.StringIO()
                with contextlib.redirect_stdout(buffer):
                    exec(compile(cell.source, str(script), "exec"), namespace)
                # the run's folder is a temporary one: shown as ".", the scripts' default LESDE_TUTORIAL_OUT
                outputs.append(buffer.getvalue().rstrip("\n").replace(tmp + "/", "./").replace(tmp, "."))
        finally:
            os.chdir(cwd)
    return {
        "script": script.name,
        "tiny": os.environ.get("LESDE_TUTORIAL_TINY") == "1",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine(),
        "seconds": round(time.perf_counter() - start, 1),
        "outputs": outputs,
    }


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.stem for p in TUTORIALS.glob("*.py"))
    for name in names:
        result = capture(name)
        path = TUTORIALS / "outputs" / f"{name}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{name}: {result['seconds']} s, {sum(bool(o) for o in result['outputs'])} cells with output -> {path}")
