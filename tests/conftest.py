"""Shared fixtures. Without a GPU the Triton kernels run in Triton's interpreter, which must be
switched on before any kernel module is imported."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Derandomized so CI is repeatable; no deadline because the interpreter is slow.
settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=30, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ("reference", "cpp", "triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def device_for(backend: str) -> str:
    """The device a backend's inputs live on: Triton on the GPU when there is one."""
    return DEVICE if backend == "triton" else "cpu"


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def pytest_collection_modifyitems(config, items):
    # Slow tests (minutes: e.g. building and installing a wheel) run on request only: -m slow or FASTMASK_SLOW=1.
    if "slow" not in (config.getoption("markexpr") or "") and not os.environ.get("FASTMASK_SLOW"):
        skip_slow = pytest.mark.skip(reason="slow: run with -m slow or FASTMASK_SLOW=1")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip_slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def op_arguments(fn) -> tuple:
    """The arguments that fastmask passes to its custom op while `fn` runs (eagerly), for opcheck."""
    import fastmask._library as library

    seen = {}

    def capture(op, impl, *args):
        seen["args"] = args
        return impl(*args)

    original = library.call
    library.call = capture
    try:
        fn()
    finally:
        library.call = original
    return seen["args"]
