"""The peers' own cross-entropy test grids, ported to fastmask's API and run on every backend: Liger-Kernel
(test/transformers/test_cross_entropy.py: plain, ignore_index, label smoothing, both, z-loss with
return_z_loss, z-loss with the other options, a loss that is not the last layer, the functional form;
test_fused_linear_cross_entropy.py: the LM head's loss against Linear + CrossEntropyLoss) and flash-attn
(tests/losses/test_cross_entropy.py: smoothing x logit_scale x z-loss x in-place backward x dtype) and
Apple's Cut Cross-Entropy (tests/test_cce_loss_forward.py and test_cce_loss_backward.py: the LM-head loss
with softcap, bias, shift and ignored rows, whose error against fp32 may exceed torch's own error in the
dtype by at most a tolerance; its vocab-parallel test is ported in tests/test_distributed.py) and quack
(tests/test_cross_entropy.py: per-row fp32 losses and gradients over a grid of shapes and dtypes, extreme
values, translation invariance, first and last class).

Each case keeps the peer's options and tolerances; the shapes are scaled down to CI size (the peers use
V = 32000 to 128k on a GPU). Where the peer compares against torch in the low-precision dtype itself,
we compare against torch in fp32 (for bf16/fp16 inputs) or fp64 (for fp32 inputs): our loss is fp32,
so the higher-precision reference is the fair one.

The whole grids run on the reference and C++ backends; on Triton (the interpreter, without a GPU) they
are marked slow, and test_triton_runs_each_grid runs one case of each grid in CI."""
import pytest
import torch
import torch.nn.functional as F

import fastmask

from .conftest import device_for

FP32 = (torch.float32, 1e-8, 1e-6)   # Liger's (dtype, atol, rtol)
BF16 = (torch.bfloat16, 1e-8, 5e-2)
LIGER_SHAPES = [(2, 64, 320), (3, 23, 1000)]  # (B, T, V): Liger's llama and "weird" shapes, scaled down


@pytest.fixture(params=["reference", "cpp", pytest.param("triton", marks=pytest.mark.slow)])
def backend(request):
    return request.param


def reference_dtype(dtype):
    return torch.float64 if dtype == torch.float32 else torch.float32


def torch_loss(x, target, *, z_loss=0.0, logit_scale=1.0, **options):
    """torch's cross-entropy in the reference precision, plus the z-loss averaged per labelled row (Liger's
    CrossEntropyWithZLoss, flash-attn's lse_square_scale term); returns (loss, z-loss)."""
    x = x.to(reference_dtype(x.dtype)) * logit_scale
    ignore_index = options.get("ignore_index", -100)
    reduction = options.get("reduction", "mean")
    ce = F.cross_entropy(x, target, **options)
    kept = target != ignore_index
    z_rows = torch.where(kept, z_loss * torch.logsumexp(x, dim=-1) ** 2, 0)
    z = z_rows.sum() / kept.sum() if reduction == "mean" else z_rows.sum() if reduction == "sum" else z_rows
    return ce + z, z


def inputs(b, t, v, dtype, device, *, scalar=1.0, ignore_index=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(b * t, v, generator=g) * scalar).to(dtype).to(device)
    target = torch.randint(0, v, (b * t,), generator=g)
    if ignore_index is not None:  # as Liger: a random number of rows, 1 to half, set to ignore_index
        count = int(torch.randint(1, b * t // 2, (1,), generator=g))
        target[torch.randperm(b * t, generator=g)[:count]] = ignore_index
    return x, target.to(device)


def check(backend, x, target, dtype_tol, *, upstream=None, ours=None, **options):
    """Our loss (and z-loss) and gradient against torch's, within the peer's tolerance."""
    _, atol, rtol = dtype_tol
    z_loss, logit_scale = options.get("z_loss", 0.0), options.get("logit_scale", 1.0)
    torch_options = {k: v for k, v in options.items() if k not in ("z_loss", "logit_scale")}
    ref_x = x.detach().clone().requires_grad_(True)
    ref_loss, ref_z = torch_loss(ref_x, target, z_loss=z_loss, logit_scale=logit_scale, **torch_options)
    our_x = x.detach().clone().requires_grad_(True)
    ours = ours or {}
    loss, z = fastmask.masked_cross_entropy(our_x if not ours.get("inplace_backward") else our_x * 1, target,
                                            return_z_loss=True, backend=backend, **options, **ours)
    torch.testing.assert_close(loss.double(), ref_loss.double(), atol=atol, rtol=rtol)
    torch.testing.assert_close(z.double(), ref_z.double(), atol=atol, rtol=rtol)
    g = torch.ones_like(ref_loss) if upstream is None else upstream(ref_loss)
    (ref_grad,) = torch.autograd.grad(ref_loss, ref_x, g)
    (grad,) = torch.autograd.grad(loss, our_x, g.to(loss.dtype))
    assert grad.dtype == x.dtype
    torch.testing.assert_close(grad.double(), ref_grad.double(), atol=atol, rtol=rtol)


# --- Liger-Kernel: test_cross_entropy.py --------------------------------------------------------


@pytest.mark.parametrize("b, t, v", LIGER_SHAPES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dtype_tol", [BF16, FP32])
def test_liger_correctness(backend, b, t, v, reduction, dtype_tol):
    x, target = inputs(b, t, v, dtype_tol[0], device_for(backend))
    check(backend, x, target, dtype_tol, reduction=reduction)


@pytest.mark.parametrize("b, t, v, ignore_index", [(2, 64, 320, 2), (3, 23, 1000, -123)])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dtype_tol", [BF16, FP32])
def test_liger_ignore_index(backend, b, t, v, ignore_index, reduction, dtype_tol):
    x, target = inputs(b, t, v, dtype_tol[0], device_for(backend), ignore_index=ignore_index)
    check(backend, x, target, dtype_tol, ignore_index=ignore_index, reduction=reduction)


@pytest.mark.parametrize("b, t, v, ignore_index, label_smoothing", [(2, 64, 320, None, 0.1), (3, 23, 1000, None, 0.1),
                                                                    (2, 64, 320, 1, 0.1), (3, 23, 1000, -300, 0.2)])
@pytest.mark.parametrize("dtype_tol", [BF16, FP32])
def test_liger_label_smoothing(backend, b, t, v, ignore_index, label_smoothing, dtype_tol):
    x, target = inputs(b, t, v, dtype_tol[0], device_for(backend), ignore_index=ignore_index)
    check(backend, x, target, dtype_tol, label_smoothing=label_smoothing, ignore_index=-100 if ignore_index is None else ignore_index)


@pytest.mark.parametrize("b, t, v", LIGER_SHAPES)
@pytest.mark.parametrize("dtype_tol", [BF16, FP32])
@pytest.mark.parametrize("z_loss", [1e-4, 1e-5])  # PaLM's, Chameleon's
def test_liger_z_loss(backend, b, t, v, dtype_tol, z_loss):
    x, target = inputs(b, t, v, dtype_tol[0], device_for(backend))
    check(backend, x, target, dtype_tol, z_loss=z_loss)


@pytest.mark.parametrize("z_loss, label_smoothing, ignore_index, reduction", [
    (1e-4, 0.1, 42, "mean"), (1e-5, 0.0, -100, "sum"), (1e-4, 0.2, 3, "sum"), (1e-5, 0.1, -100, "mean")])
@pytest.mark.parametrize("dtype_tol", [BF16, FP32])
def test_liger_z_loss_with_other_options(backend, z_loss, label_smoothing, ignore_index, reduction, dtype_tol):
    x, target = inputs(3, 23, 1000, dtype_tol[0], device_for(backend), ignore_index=ignore_index)
    check(backend, x, target, dtype_tol, z_loss=z_loss, label_smoothing=label_smoothing, ignore_index=ignore_index,
          reduction=reduction)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dtype_tol", [BF16, FP32])
def test_liger_not_last_layer(backend, reduction, dtype_tol):
    x, target = inputs(2, 64, 320, dtype_tol[0], device_for(backend))
    check(backend, x, target, dtype_tol, reduction=reduction, upstream=lambda loss: torch.full_like(loss, 3.0))


@pytest.mark.parametrize("b, t, v", [(2, 2, 8), (9, 7, 41)])
@pytest.mark.parametrize("dtype_tol", [BF16, FP32])
def test_liger_functional(backend, b, t, v, dtype_tol):
    # Liger's functional case: ignore_index 0, z-loss 1e-4, smoothing 0.1, a random upstream gradient.
    x, target = inputs(b, t, v, dtype_tol[0], device_for(backend))
    g = torch.Generator().manual_seed(1)
    check(backend, x, target, dtype_tol, ignore_index=0, z_loss=1e-4, label_smoothing=0.1,
          upstream=lambda loss: torch.randn(loss.shape, generator=g, dtype=loss.dtype).to(loss.device))


# --- Liger-Kernel: test_fused_linear_cross_entropy.py -------------------------------------------


@pytest.mark.parametrize("b, t, h, v", [(2, 16, 32, 300), (3, 11, 17, 123)])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("label_smoothing, ignore_index, z_loss", [(0.0, -100, 0.0), (0.1, 42, 1e-4)])
@pytest.mark.parametrize("dtype, atol, rtol", [(torch.bfloat16, 5e-3, 5e-2), (torch.float32, 1e-5, 5e-4)])
def test_liger_fused_linear(backend, b, t, h, v, reduction, bias, label_smoothing, ignore_index, z_loss, dtype, atol, rtol):
    device = device_for(backend)
    g = torch.Generator().manual_seed(0)
    hidden = (torch.randn(b * t, h, generator=g)).to(dtype).to(device)
    weight = (torch.randn(v, h, generator=g) / h**0.5).to(dtype).to(device)
    b_ = (torch.randn(v, generator=g)).to(dtype).to(device) if bias else None
    target = torch.randint(0, v, (b * t,), generator=g)
    target[torch.randperm(b * t, generator=g)[: b * t // 3]] = ignore_index
    target = target.to(device)
    leaves = [t_.clone().requires_grad_(True) for t_ in (hidden, weight, b_) if t_ is not None]
    ref = [t_.detach().to(reference_dtype(dtype)).requires_grad_(True) for t_ in leaves]
    logits = F.linear(ref[0], ref[1], ref[2] if bias else None)
    ref_loss, _ = torch_loss(logits, target, z_loss=z_loss, label_smoothing=label_smoothing, ignore_index=ignore_index,
                             reduction=reduction)
    loss = fastmask.masked_lm_loss(leaves[0], leaves[1], target, bias=leaves[2] if bias else None,
                                   label_smoothing=label_smoothing, ignore_index=ignore_index, z_loss=z_loss,
                                   reduction=reduction, backend=backend)
    torch.testing.assert_close(loss.double(), ref_loss.double(), atol=atol, rtol=rtol)
    for got, want in zip(torch.autograd.grad(loss, leaves), torch.autograd.grad(ref_loss, ref)):
        torch.testing.assert_close(got.double(), want.double(), atol=atol, rtol=rtol)


# --- flash-attn: tests/losses/test_cross_entropy.py ---------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("inplace_backward", [False, True])
@pytest.mark.parametrize("z_loss", [0.0, 1e-2])
@pytest.mark.parametrize("logit_scale", [1.0, 0.7])
@pytest.mark.parametrize("smoothing", [0.0, 0.9])
def test_flash_attn_cross_entropy(backend, dtype, inplace_backward, z_loss, logit_scale, smoothing, vocab=2051, seqlen=16):
    # flash-attn: batch 8 x seqlen 128 with 10 rows ignored, V = 50257 and 128k; here 4 x 16 rows, V = 2051.
    x, target = inputs(4, seqlen, vocab, dtype, device_for(backend))
    target[torch.randperm(4 * seqlen, generator=torch.Generator().manual_seed(2))[:10]] = -100
    rtol, atol = (1e-5, 1e-6) if dtype == torch.float32 else (1e-3, 1e-4)  # flash-attn's gradient tolerance
    g = torch.Generator().manual_seed(3)
    check(backend, x, target, (dtype, atol, rtol), label_smoothing=smoothing, z_loss=z_loss, logit_scale=logit_scale,
          ours={"inplace_backward": inplace_backward},
          upstream=lambda loss: torch.randn(loss.shape, generator=g, dtype=loss.dtype).to(loss.device))


# --- Apple Cut Cross-Entropy: test_cce_loss_forward.py / test_cce_loss_backward.py ---------------

CCE_SHAPES = [(64, 128, 32), (63, 127, 31)]  # (N, V, D): CCE's (256, 512, 128) and (252, 507, 123), scaled down


@pytest.fixture(params=["cpp", pytest.param("triton", marks=pytest.mark.slow)])
def kernel_backend(request):
    """The CCE grids on the kernels (the reference is their oracle and has its own tests): CI-sized."""
    return request.param
CCE_DTYPES = [(torch.float32, 1e-5), (torch.float16, 1e-3), (torch.bfloat16, 1e-2)]


def cce_inputs(shape, dtype, has_bias, invalids, device):
    n, v, d = shape
    g = torch.Generator().manual_seed(0)
    e = torch.randn((n, d), generator=g) / d**0.5
    c = torch.randn((v, d), generator=g)
    c[: min(n, v) // 2] = e[: min(n, v) // 2]  # as CCE: rows whose label logit stands out
    bias = torch.randn(v, generator=g) * 0.02 if has_bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    if invalids:
        targets[torch.randperm(n, generator=g)[: int(0.2 * n)]] = -100
    cast = lambda t: None if t is None else t.to(dtype).to(device)  # noqa: E731
    return cast(e.view(1, n, d)), cast(c), cast(bias), targets.view(1, n).to(device)


def cce_dense(e, c, bias, targets, softcap, shift, reduction):
    """Linear, softcap and torch's cross-entropy in fp32 on every row (CCE's _loss)."""
    if shift:
        e, targets = e[:, :-1], targets[:, 1:]
    logits = e.flatten(0, -2) @ c.T
    if bias is not None:
        logits = logits + bias
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits.float(), targets.flatten(), reduction=reduction)


@pytest.mark.parametrize("dtype, error_tol", CCE_DTYPES)
@pytest.mark.parametrize("softcap", [None, 20.0])
@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("invalids", [False, True])
@pytest.mark.parametrize("shape", CCE_SHAPES)
def test_cce_forward(kernel_backend, dtype, error_tol, softcap, has_bias, shift, invalids, shape):
    backend = kernel_backend
    e, c, bias, targets = cce_inputs(shape, dtype, has_bias, invalids, device_for(backend))
    exact = cce_dense(e.float(), c.float(), None if bias is None else bias.float(), targets, softcap, shift, "none")
    in_dtype = cce_dense(e, c, bias, targets, softcap, shift, "none")
    ours = fastmask.masked_lm_loss(e, c, targets, bias=bias, softcap=softcap, shift=shift, reduction="none", backend=backend)
    assert ((ours.flatten() - exact).abs() <= (in_dtype - exact).abs() + error_tol).all()


@pytest.mark.parametrize("dtype, error_tol", CCE_DTYPES[1:])
@pytest.mark.parametrize("softcap", [None, 20.0])
@pytest.mark.parametrize("has_bias", [False, True])
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("invalids", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cce_backward(kernel_backend, dtype, error_tol, softcap, has_bias, shift, invalids, reduction, shape=CCE_SHAPES[1]):
    backend = kernel_backend
    e, c, bias, targets = cce_inputs(shape, dtype, has_bias, invalids, device_for(backend))
    count = (targets[:, 1:] if shift else targets).ne(-100).sum()

    def grads_of(fn, leaves):
        leaves = [t.detach().clone().requires_grad_(True) for t in leaves if t is not None]
        loss = fn(*leaves)
        if reduction == "sum":
            loss = loss / count
        return torch.autograd.grad(loss.mean(), leaves)

    leaves = (e, c, bias)
    dense = lambda e_, c_, b_=None: cce_dense(e_, c_, b_, targets, softcap, shift, reduction)  # noqa: E731
    exact = grads_of(lambda e_, c_, b_=None: dense(e_.float(), c_.float(), None if b_ is None else b_.float()), leaves)
    in_dtype = grads_of(dense, leaves)
    ours = grads_of(lambda e_, c_, b_=None: fastmask.masked_lm_loss(e_, c_, targets, bias=b_, softcap=softcap, shift=shift,
                                                                    reduction=reduction, backend=backend), leaves)
    for got, want, torch_grad in zip(ours, exact, in_dtype):
        assert ((got.float() - want).abs() <= (torch_grad.float() - want).abs() + error_tol).all()


# --- quack: tests/test_cross_entropy.py ---------------------------------------------------------


@pytest.mark.parametrize("input_dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n", [192, 760, 1128, 4096])  # quack: 192 ... 262144
@pytest.mark.parametrize("m", [1, 77, 289])
def test_quack_cross_entropy(kernel_backend, m, n, input_dtype):
    atol, rtol = 5e-5, 1e-5
    g = torch.Generator().manual_seed(0)
    x = (0.1 * torch.randn(m, n, generator=g)).to(input_dtype).to(device_for(kernel_backend)).requires_grad_(True)
    target = torch.randint(0, n, (m,), generator=g).to(x.device)
    x_ref = x.detach().clone().requires_grad_(True)
    loss = fastmask.masked_cross_entropy(x, target, reduction="none", backend=kernel_backend)
    loss_ref = F.cross_entropy(x_ref.float(), target, reduction="none")
    assert loss.shape == (m,) and loss.dtype == torch.float32
    torch.testing.assert_close(loss, loss_ref, atol=atol, rtol=rtol)
    assert (loss >= 0).all() and loss.isfinite().all()
    dloss = torch.randn(m, generator=g).to(x.device)
    (dx_ref,) = torch.autograd.grad(loss_ref, x_ref, dloss)
    (dx,) = torch.autograd.grad(loss, x, dloss)
    assert dx.shape == x.shape
    torch.testing.assert_close(dx, dx_ref.to(input_dtype), atol=atol, rtol=rtol)


@pytest.mark.parametrize("input_dtype", [torch.float16, torch.float32])
def test_quack_extreme_values(backend, input_dtype):
    m, n = 16, 1024
    device = device_for(backend)
    target = torch.randint(0, n, (m,), generator=torch.Generator().manual_seed(0)).to(device)
    log_n = torch.full((m,), float(torch.log(torch.tensor(float(n)))), device=device)
    for value in (10.0, -10.0):  # equal logits: log(N)
        x = torch.full((m, n), value, dtype=input_dtype, device=device)
        torch.testing.assert_close(fastmask.masked_cross_entropy(x, target, reduction="none", backend=backend), log_n,
                                   atol=1e-2, rtol=1e-2)
    x = torch.full((m, n), -10.0, dtype=input_dtype, device=device)
    x[torch.arange(m), target] = 10.0  # one-hot like: the target dominates
    assert (fastmask.masked_cross_entropy(x, target, reduction="none", backend=backend) < 1.0).all()


def test_quack_translation_invariance_and_edge_targets(backend):
    device = device_for(backend)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 512, generator=g).to(device)
    target = torch.randint(0, 512, (8,), generator=g).to(device)
    ours = lambda logits, y: fastmask.masked_cross_entropy(logits, y, reduction="none", backend=backend)  # noqa: E731
    torch.testing.assert_close(ours(x, target), ours(x + 100.0, target), atol=1e-5, rtol=1e-5)
    x = 0.1 * torch.randn(16, 1024, generator=g).to(device)
    for label in (0, 1023):  # the first and the last class
        y = torch.full((16,), label, device=device)
        torch.testing.assert_close(ours(x, y), F.cross_entropy(x, y, reduction="none"), atol=1e-4, rtol=1e-4)


def test_triton_runs_each_grid():
    """One case of each grid on Triton (all of them: the slow-marked grids above)."""
    test_liger_correctness("triton", 2, 8, 320, "mean", BF16)
    test_liger_ignore_index("triton", 3, 7, 100, -123, "sum", FP32)
    test_liger_label_smoothing("triton", 3, 7, 100, -300, 0.2, FP32)
    test_liger_z_loss_with_other_options("triton", 1e-4, 0.1, 42, "mean", BF16)
    test_liger_functional("triton", 9, 7, 41, FP32)
    test_liger_fused_linear("triton", 3, 11, 17, 123, "mean", True, 0.1, 42, 1e-4, torch.float32, 1e-5, 5e-4)
    test_flash_attn_cross_entropy("triton", torch.bfloat16, True, 1e-2, 0.7, 0.9, vocab=257, seqlen=4)
    test_cce_forward("triton", torch.bfloat16, 1e-2, 20.0, True, True, True, (15, 37, 8))
    test_cce_backward("triton", torch.float16, 1e-3, 20.0, True, True, True, "mean", shape=(15, 37, 8))
    test_quack_cross_entropy("triton", 77, 760, torch.bfloat16)
