"""Vocabulary-parallel losses over torch.distributed (gloo, CPU): 2 and 3 ranks in subprocesses with a
file:// rendezvous, uneven shards. Each rank checks its loss and every gradient (its logits shard,
the hidden states, its weight and bias shard) against the single-process op on the whole vocabulary.
And data-parallel masking: DDP ranks with a DistributedSampler mask every sample as one process does."""
import os
import subprocess
import sys
import tempfile

import pytest
import torch

if not torch.cuda.is_available():  # before any Triton kernel is imported (the ranks run without conftest)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fastmask  # noqa: E402

IGNORE = -100
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_ranks(world: int, job: str, timeout: float = 240) -> None:
    """Runs `python -m tests.test_distributed job rank world file` for every rank; fails with their output."""
    with tempfile.TemporaryDirectory() as tmp:
        rendezvous = os.path.join(tmp, "rendezvous")
        env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
        procs = [subprocess.Popen([sys.executable, "-m", "tests.test_distributed", job, str(rank), str(world), rendezvous],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in range(world)]
        outputs = []
        for proc in procs:
            try:
                outputs.append(proc.communicate(timeout=timeout)[0])
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                raise
        failed = [(rank, out) for rank, (proc, out) in enumerate(zip(procs, outputs)) if proc.returncode != 0]
        assert not failed, "\n".join(f"--- rank {rank} ---\n{out[-4000:]}" for rank, out in failed)


@pytest.mark.parametrize("world", [2, 3])
def test_vocab_parallel_losses_equal_the_single_process_op(world):
    run_ranks(world, "losses")


def test_ddp_masks_every_sample_as_one_process():
    run_ranks(2, "ddp")


def one_rank_group():
    """A gloo group of one rank, without init_process_group."""
    import datetime

    import torch.distributed as dist

    return dist.ProcessGroupGloo(dist.HashStore(), 0, 1, datetime.timedelta(seconds=60))


def test_one_rank_group_is_the_single_process_op():
    group = one_rank_group()
    logits, labels = torch.randn(6, 11, dtype=torch.float64), torch.tensor([0, 3, IGNORE, 10, 5, IGNORE])
    outs = []
    for g in (None, group):
        x = logits.clone().requires_grad_(True)
        loss, accuracy = fastmask.masked_cross_entropy(x, labels, label_smoothing=0.1, z_loss=1e-2, return_accuracy=True,
                                                       process_group=g)
        outs.append((loss, accuracy, *torch.autograd.grad(loss, x)))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)


@pytest.mark.gpu
def test_nccl_one_rank_group_on_the_gpu():
    """The NCCL path (bench/gpu_suite.sh runs the gpu tests): CUDA tensors, the Triton kernels, NCCL collectives."""
    import torch.distributed as dist

    if not hasattr(dist, "ProcessGroupNCCL"):
        pytest.skip("torch built without NCCL")
    group = dist.ProcessGroupNCCL(dist.HashStore(), 0, 1)
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(2, 9, 16, generator=g).cuda(), (torch.randn(300, 16, generator=g) / 4).cuda()
    labels = torch.randint(0, 300, (2, 9), generator=g).cuda()
    labels[:, ::3] = IGNORE
    outs = []
    for pg in (None, group):
        leaves = [t.clone().requires_grad_(True) for t in (hidden, weight)]
        loss, accuracy = fastmask.masked_lm_loss(*leaves, labels, label_smoothing=0.1, z_loss=1e-3, max_rows=12,
                                                 return_accuracy=True, process_group=pg)
        logits = (leaves[0] @ leaves[1].T).detach().requires_grad_(True)
        ce = fastmask.masked_cross_entropy(logits, labels, label_smoothing=0.1, shift=True, process_group=pg)
        outs.append((loss, accuracy, ce, *torch.autograd.grad(loss, leaves), *torch.autograd.grad(ce, logits)))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


def test_process_group_errors():
    logits = torch.randn(3, 5)
    labels = torch.tensor([0, 1, IGNORE])
    with pytest.raises(ValueError, match="process_group"):
        fastmask.masked_cross_entropy(logits, labels, process_group=object())
    group = one_rank_group()
    with pytest.raises(ValueError, match="weight: class weights are not supported"):
        fastmask.masked_cross_entropy(logits, labels, weight=torch.ones(5), process_group=group)
    with pytest.raises(ValueError, match="inplace_backward"):
        fastmask.masked_cross_entropy(logits, labels, inplace_backward=True, process_group=group)
    with pytest.raises(ValueError, match="labels: label 5 at row 1 is outside"):
        fastmask.masked_cross_entropy(logits, torch.tensor([0, 5, IGNORE]), process_group=group)
    with pytest.raises(ValueError, match="labels: label 7"):
        fastmask.masked_lm_loss(torch.randn(3, 4), torch.randn(5, 4), torch.tensor([7, 1, IGNORE]), process_group=group)


def test_vocab_parallel_bench_case_runs():
    from fastmask.bench.cases.loss import _vocab_parallel_case

    case = _vocab_parallel_case(16, 101)  # two gloo ranks as two threads of this process
    assert case.baseline in case.providers and len(case.providers) == 2
    for provider in case.providers.values():
        provider()


# --- the ranks' side ----------------------------------------------------------------------------


def shards(vocab: int, world: int) -> list[tuple[int, int]]:
    """Uneven contiguous shards: the first ranks get one more id."""
    sizes = [vocab // world + (r < vocab % world) for r in range(world)]
    starts = [sum(sizes[:r]) for r in range(world)]
    return [(s, s + n) for s, n in zip(starts, sizes)]


def _close(got, want, what, tol):
    torch.testing.assert_close(got.double(), want.double(), atol=tol, rtol=tol, msg=lambda m: f"{what}: {m}")


def check_cross_entropy(group, rank, world, backend):
    g = torch.Generator().manual_seed(3)
    vocab = 37
    logits = (3 * torch.randn(4, 6, vocab, generator=g, dtype=torch.float64))
    labels = torch.randint(0, vocab, (4, 6), generator=g)
    labels[torch.rand(4, 6, generator=g) < 0.4] = IGNORE
    labels[0, 1] = vocab - 1  # on the last shard
    dtype, tol = (torch.float32, 2e-5) if backend == "triton" else (torch.float64, 1e-10)
    logits = logits.to(dtype)
    start, end = shards(vocab, world)[rank]
    cases = [dict(label_smoothing=0.1, z_loss=1e-2, softcap=5.0), dict(reduction="none", shift=True, label_smoothing=0.2),
             dict(reduction="sum", logit_scale=0.5), dict(normalizer=7.0, z_loss=1e-3), dict()]
    for options in cases[:2] if backend == "triton" else cases:  # the interpreter is slow
        outs = []
        for x in (logits, logits[..., start:end]):
            leaf = x.clone().requires_grad_(True)
            loss, lse, z, accuracy, predicted = fastmask.masked_cross_entropy(
                leaf, labels, return_lse=True, return_z_loss=True, return_accuracy=True, return_predictions=True,
                backend=backend, process_group=group if x.shape[-1] != vocab else None, **options)
            (grad,) = torch.autograd.grad(loss.sum() + 0.3 * lse.sum(), leaf)
            outs.append((loss, lse, z, accuracy, predicted, grad))
        full, part = outs
        what = f"masked_cross_entropy {backend} {options}"
        for name, a, b in zip(("loss", "lse", "z_loss", "accuracy"), part, full):
            _close(a.detach(), b.detach(), f"{what} {name}", tol)
        assert torch.equal(part[4], full[4]), what
        _close(part[5], full[5][..., start:end], f"{what} grad", tol)


def check_lm_loss(group, rank, world, backend):
    g = torch.Generator().manual_seed(5)
    vocab, dim = 29, 8
    dtype, tol = (torch.float32, 2e-5) if backend == "triton" else (torch.float64, 1e-10)
    hidden = torch.randn(3, 7, dim, generator=g, dtype=torch.float64).to(dtype)
    weight = (torch.randn(vocab, dim, generator=g, dtype=torch.float64) / dim**0.5).to(dtype)
    bias = torch.randn(vocab, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(0, vocab, (3, 7), generator=g)
    labels[torch.rand(3, 7, generator=g) < 0.5] = IGNORE
    start, end = shards(vocab, world)[rank]
    positions = torch.tensor([[0, 2, -1], [6, 1, 3], [4, -1, 5]])
    cases = [dict(label_smoothing=0.1, z_loss=1e-2, softcap=4.0, chunk_size=5), dict(reduction="none", shift=True),
             dict(positions=positions, reduction="sum"), dict(max_rows=6, logit_scale=2.0), dict()]
    for options in cases[:2] if backend == "triton" else cases:
        outs = []
        for w, b in ((weight, bias), (weight[start:end], bias[start:end])):
            leaves = [t.clone().requires_grad_(True) for t in (hidden, w, b)]
            loss, accuracy = fastmask.masked_lm_loss(
                leaves[0], leaves[1], labels, bias=leaves[2], return_accuracy=True, backend=backend,
                process_group=group if w.shape[0] != vocab else None, **options)
            outs.append((loss, accuracy, *torch.autograd.grad(loss.sum(), leaves)))
        full, part = outs
        what = f"masked_lm_loss {backend} {options}"
        _close(part[0].detach(), full[0].detach(), f"{what} loss", tol)
        _close(part[1], full[1], f"{what} accuracy", tol)
        _close(part[2], full[2], f"{what} grad hidden", tol)
        _close(part[3], full[3][start:end], f"{what} grad weight", tol)
        _close(part[4], full[4][start:end], f"{what} grad bias", tol)


def job_losses(rank, world, rendezvous):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        group = dist.new_group(list(range(world)))
        for backend in ("reference", "cpp", "triton"):
            check_cross_entropy(group, rank, world, backend)
            check_lm_loss(group, rank, world, backend)
    finally:
        dist.destroy_process_group()


def job_ddp(rank, world, rendezvous):
    import torch.distributed as dist

    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import ddp_mlm

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        # Each rank masks its share of the samples; gathered, they equal one process masking them all.
        mine = ddp_mlm.masks_of_rank(rank, world, epoch=1)
        everyone = [None] * world
        dist.all_gather_object(everyone, mine)
        if rank == 0:
            single = ddp_mlm.masks_of_rank(0, 1, epoch=1)
            gathered = {key: value for part in everyone for key, value in part.items()}
            assert gathered.keys() == single.keys()
            for key, labels in single.items():
                assert torch.equal(gathered[key], labels), key
        ddp_mlm.train(rank, world, steps=2)  # the example runs under DDP
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    job, rank, world, rendezvous = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    {"losses": job_losses, "ddp": job_ddp}[job](rank, world, rendezvous)
