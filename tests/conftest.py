import signal

import pytest
import torch

# The interrupt tests send SIGINT to child processes. A test run started in the background of a non-interactive
# shell (`cmd &`, nohup) inherits SIGINT ignored, and an ignored signal stays ignored across exec, so the children
# would never see it: give this process Python's usual handler, which exec resets to the default in the children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# One intra-op thread: the tests use small tensors, where a second thread only adds contention (seen here: a batched
# eigh of 100 64x64 matrices took 12 s with 2 threads on a loaded 2-core machine, 0.07 s with 1).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts on one intra-op thread, whatever an earlier test set (a test may change it for itself)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(request.param)


@pytest.fixture
def gen():
    """A seeded CPU generator per test (no global seeds)."""
    return torch.Generator().manual_seed(1234)
