import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The C++ kernels read torch's thread count, so this pins them and their torch peers to one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
