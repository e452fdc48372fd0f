"""The thread policy: C++ kernels use torch.get_num_threads(), which is 1 in DataLoader workers, so
a forked worker never enters an OpenMP region the parent already started (that hangs)."""
import subprocess
import sys
import textwrap

import torch

import fastmask

FORK_SCRIPT = textwrap.dedent(
    """
    import torch
    from torch.utils.data import DataLoader, Dataset
    import fastmask

    torch.set_num_threads(2)
    parent = fastmask.random_words(1, torch.arange(64), 4096, backend="cpp")  # starts the OpenMP pool

    class Rows(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            assert torch.get_num_threads() == 1
            return fastmask.random_words(1, torch.arange(64), 4096, backend="cpp")[i]

    loader = DataLoader(Rows(), batch_size=2, num_workers=2, multiprocessing_context="fork")
    assert torch.equal(torch.cat(list(loader)), parent[:8])
    print("ok")
    """
)


def test_forked_dataloader_workers_do_not_hang():
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().endswith("ok")


def test_thread_count_does_not_change_the_words():
    keys = torch.arange(37)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fastmask.random_words(5, keys, 1000, backend="cpp")
        torch.set_num_threads(2)
        two = fastmask.random_words(5, keys, 1000, backend="cpp")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
