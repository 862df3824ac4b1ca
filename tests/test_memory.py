"""The memory simulate budgets before any work against the peak resident memory a run really takes (issue 16).

Each configuration runs in a fresh process: import and warm up, read the resident set size, run, and compare the
growth of the peak (``VmHWM``) with the plan's working bytes plus the output's, within 10%.
"""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import gc, json, sys, torch, lesde
    from lesde._run_plan import _output_bytes, plan_run
    from lesde.simulate import _validate
    torch.set_num_threads(1)
    method, save, P = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = lesde.LESDE(10, 64, 100)
    kw = dict(t_end=0.02, dt=0.01, n_paths=P, n_save=2, save=save, method=method, progress=False)
    lesde.simulate(lesde.LESDE(10, 64, 2), **(kw | {"n_paths": 2}))  # imports and kernels warmed up
    gc.collect()
    page = 4096
    with open("/proc/self/statm") as fh:
        rss = int(fh.read().split()[1]) * page
    req = _validate(model, 0.02, 0.01, P, None, 2, method, save, "cpu", torch.float32, 0, None, False, None, 1.0, None)
    plan = plan_run(req)
    estimate = plan.work_bytes + P * _output_bytes(req)
    lesde.simulate(model, **kw)
    with open("/proc/self/status") as fh:  # VmHWM: this process's peak (ru_maxrss can carry the parent's)
        peak = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    print(json.dumps({"estimate": estimate, "measured": peak - rss, "chunk": plan.chunk_paths}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize(
    "method, save, paths",
    [("euler", "full", 1024), ("euler", "metrics", 1024), ("exact", "full", 1024), ("euler", "means", 32768)],
)
def test_memory_check_matches_the_measured_peak(method, save, paths):
    out = subprocess.run([sys.executable, "-c", SCRIPT, method, save, str(paths)], capture_output=True, text=True,
                         check=True, timeout=300)  # fmt: skip
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["chunk"] == paths  # one chunk: the whole run's working set is live at once
    assert r["measured"] == pytest.approx(r["estimate"], rel=0.10), r
