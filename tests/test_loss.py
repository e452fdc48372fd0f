"""masked_cross_entropy: torch's semantics in three backends, the extras (z-loss, softcap,
normalizer, in-place backward), the edge cases, errors and compile."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import fastmask

from .conftest import BACKENDS, device_for

IGNORE = -100
ATOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 1e-2, torch.float16: 1e-3}


def dtypes_for(backend):
    return [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def make(n, vocab, dtype, *, ignored=0.85, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(n, vocab, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, vocab, (n,), generator=g)
    labels[torch.rand(n, generator=g) < ignored] = IGNORE
    return logits.to(device), labels.to(device)


def loss_and_grad(fn, logits, labels, upstream=None, **kwargs):
    x = logits.detach().clone().requires_grad_(True)
    loss = fn(x, labels, **kwargs)
    (grad,) = torch.autograd.grad(loss, x, upstream if upstream is not None else torch.ones_like(loss))
    return loss.detach(), grad


def ours(backend):
    return lambda x, y, **kw: fastmask.masked_cross_entropy(x, y, backend=backend, **kw)


def assert_close_as_torch(backend, logits, labels, **kwargs):
    """Error against an fp64 evaluation at most twice torch's own error in the dtype, plus atol
    (relative to the values' magnitude: a summed loss is large)."""
    exact_kwargs = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    exact_loss, exact_grad = loss_and_grad(F.cross_entropy, logits.double(), labels, **exact_kwargs)
    torch_loss, torch_grad = loss_and_grad(F.cross_entropy, logits, labels, **kwargs)
    loss, grad = loss_and_grad(ours(backend), logits, labels, **kwargs)
    assert loss.dtype == (torch.float64 if logits.dtype == torch.float64 else torch.float32)  # fp32 losses
    assert grad.dtype == logits.dtype
    atol = ATOL[logits.dtype]
    for got, reference_value, exact in ((loss, torch_loss, exact_loss), (grad, torch_grad, exact_grad)):
        torch_error = (reference_value.double() - exact).abs().max()
        scale = max(1.0, float(exact.abs().max())) if exact.numel() else 1.0
        assert (got.double() - exact).abs().max() <= 2 * torch_error + atol * scale


# --- torch's semantics ------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [dict(), dict(label_smoothing=0.1), dict(weight=True), dict(weight=True, label_smoothing=0.2)])
def test_matches_torch(backend, reduction, options):
    for dtype in dtypes_for(backend):
        logits, labels = make(24, 77, dtype, ignored=0.5, device=device_for(backend))
        kwargs = dict(options, reduction=reduction)
        if options.get("weight"):
            kwargs["weight"] = torch.rand(77, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype).to(logits.device)
        assert_close_as_torch(backend, logits, labels, **kwargs)


@given(n=st.integers(0, 12), vocab=st.sampled_from([1, 2, 5, 100, 1000, 1025]), ignored=st.sampled_from([0.0, 0.5, 0.85, 1.0]),
       seed=st.integers(0, 100))
def test_backends_agree(n, vocab, ignored, seed):
    logits, labels = make(n, vocab, torch.float32, ignored=ignored, seed=seed)
    options = dict(label_smoothing=0.1, z_loss=1e-3, softcap=5.0, reduction="none")
    expected = loss_and_grad(ours("reference"), logits, labels, **options)
    for backend in ("cpp", "triton"):
        device = device_for(backend)
        loss, grad = loss_and_grad(ours(backend), logits.to(device), labels.to(device), **options)
        torch.testing.assert_close(loss.cpu(), expected[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad.cpu(), expected[1], rtol=1e-5, atol=1e-6)


# --- the extras, by their formulas ------------------------------------------------------------


def formula(logits, labels, *, z_loss=0.0, softcap=None):
    """Per-row loss in fp64 written out: z-loss (PaLM) and tanh softcapping (Gemma 2)."""
    x = logits.double()
    z = softcap * torch.tanh(x / softcap) if softcap else x
    lse = torch.logsumexp(z, 1)
    kept = labels != IGNORE
    target = torch.where(kept, labels, 0)
    loss = lse - z.gather(1, target[:, None])[:, 0] + z_loss * lse**2
    return torch.where(kept, loss, 0)


@pytest.mark.parametrize("options", [dict(z_loss=1e-2), dict(softcap=4.0), dict(z_loss=1e-3, softcap=30.0)])
def test_z_loss_and_softcap_formulas(backend, options):
    logits, labels = make(16, 50, torch.float32, ignored=0.3, device=device_for(backend))
    expected = formula(logits.cpu(), labels.cpu(), **options)
    got = fastmask.masked_cross_entropy(logits, labels, reduction="none", backend=backend, **options)
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-5, atol=1e-5)
    mean = fastmask.masked_cross_entropy(logits, labels, backend=backend, **options)
    torch.testing.assert_close(mean.cpu().double(), expected.sum() / (labels.cpu() != IGNORE).sum(), rtol=1e-5, atol=1e-6)


def test_normalizer_divides_the_sum(backend):
    logits, labels = make(16, 50, torch.float32, device=device_for(backend))
    total = fastmask.masked_cross_entropy(logits, labels, reduction="sum", backend=backend)
    for normalizer in (torch.tensor(7, device=logits.device), 7, torch.tensor(7.0, device=logits.device)):
        got = fastmask.masked_cross_entropy(logits, labels, normalizer=normalizer, backend=backend)
        torch.testing.assert_close(got, total / 7)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_inplace_backward(backend, reduction):
    for dtype in dtypes_for(backend):
        logits, labels = make(20, 64, dtype, ignored=0.5, device=device_for(backend))
        upstream = None if reduction != "none" else torch.linspace(0.5, 2, 20, device=logits.device).to(dtype)
        expected_loss, expected_grad = loss_and_grad(ours(backend), logits, labels, upstream, reduction=reduction, label_smoothing=0.1)
        x = logits.detach().clone().requires_grad_(True)
        buffer = x * 1  # an intermediate, as a model's logits are
        loss = fastmask.masked_cross_entropy(buffer, labels, reduction=reduction, label_smoothing=0.1, inplace_backward=True, backend=backend)
        scale = 3.0
        (grad,) = torch.autograd.grad(loss, x, (upstream if upstream is not None else torch.ones_like(loss)) * scale)
        torch.testing.assert_close(loss, expected_loss)
        torch.testing.assert_close(grad, expected_grad * scale, rtol=2e-2 if dtype != torch.float32 else 1e-5, atol=1e-6)


# --- edge cases -------------------------------------------------------------------------------


def test_all_ignored_gives_zero_loss_and_zero_gradient(backend):
    logits, _ = make(8, 30, torch.float32, device=device_for(backend))
    labels = torch.full((8,), IGNORE, device=logits.device)
    for reduction in ("mean", "sum"):
        loss, grad = loss_and_grad(ours(backend), logits, labels, reduction=reduction)
        assert float(loss) == 0.0 and not grad.any()
    assert math.isnan(float(F.cross_entropy(logits.cpu(), labels.cpu())))  # torch's behaviour, for contrast


def test_minus_infinity_logits(backend):
    logits, labels = make(6, 10, torch.float32, ignored=0.0, device=device_for(backend))
    logits[:, 5:] = float("-inf")
    labels = labels % 5
    loss, grad = loss_and_grad(ours(backend), logits, labels, reduction="none")
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all() and not grad[:, 5:].any()
    expected, _ = loss_and_grad(F.cross_entropy, logits.cpu(), labels.cpu(), reduction="none")
    torch.testing.assert_close(loss.cpu(), expected)
    labels[0] = 7  # the label's own logit is -inf: an infinite loss, not a NaN
    loss = fastmask.masked_cross_entropy(logits, labels, reduction="none", backend=backend)
    assert float(loss[0]) == float("inf") and torch.isfinite(loss[1:]).all()


def test_three_dimensional_logits(backend):
    logits, labels = make(24, 40, torch.float32, device=device_for(backend))
    got = fastmask.masked_cross_entropy(logits.reshape(4, 6, 40), labels.reshape(4, 6), reduction="none", backend=backend)
    assert got.shape == (4, 6)
    torch.testing.assert_close(got.reshape(-1), fastmask.masked_cross_entropy(logits, labels, reduction="none", backend=backend))


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck_fp64(backend):
    logits, labels = make(6, 9, torch.float64, ignored=0.3)
    weight = torch.rand(9, dtype=torch.float64)
    x = logits.clone().requires_grad_(True)
    options = dict(weight=weight, label_smoothing=0.1, z_loss=1e-2, softcap=3.0, backend=backend)
    assert torch.autograd.gradcheck(lambda t: fastmask.masked_cross_entropy(t, labels, **options), (x,))


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_offsets_beyond_2_31(backend):
    """Rows 2^30 elements apart: byte and element offsets above 2^31 (lazily allocated pages)."""
    buffer = torch.empty(3 * 2**30 + 64)
    logits = buffer.as_strided((3, 64), (2**30, 1))
    logits.copy_(torch.randn(3, 64, generator=torch.Generator().manual_seed(0)))
    labels = torch.tensor([1, IGNORE, 63])
    dense = logits.clone()
    got = loss_and_grad(ours(backend), logits, labels, reduction="none")
    expected = loss_and_grad(F.cross_entropy, dense, labels, reduction="none")
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])


def test_cpp_portable_path_matches():
    """The C++ kernel has an AVX2 path and a portable one (fp64, older CPUs): both give the loss."""
    from fastmask import _C

    logits, labels = make(16, 1500, torch.float32, ignored=0.3)
    options = dict(label_smoothing=0.1, z_loss=1e-3, softcap=5.0, weight=torch.rand(1500), reduction="none")
    fast = loss_and_grad(ours("cpp"), logits, labels, **options)
    _C.cross_entropy_simd(False)
    try:
        portable = loss_and_grad(ours("cpp"), logits, labels, **options)
    finally:
        _C.cross_entropy_simd(True)
    expected = loss_and_grad(ours("reference"), logits, labels, **options)
    for got in (fast, portable):
        torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-6)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend, validate", [("reference", False), ("cpp", False), *[(b, True) for b in BACKENDS]])
def test_labels_outside_the_vocabulary(backend, validate):
    logits, _ = make(4, 10, torch.float32, device=device_for(backend))
    labels = torch.tensor([1, IGNORE, 10, -3], device=logits.device)
    with pytest.raises(ValueError, match=r"labels: label 10 at row 2 is outside \[0, 10\) and not ignore_index"):
        fastmask.masked_cross_entropy(logits, labels, validate=validate, backend=backend)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(label_smoothing=1.0), r"label_smoothing: expected a number in \[0.0, 1.0\), got 1.0"),
        (dict(label_smoothing=-0.1), "label_smoothing: expected a number in"),
        (dict(z_loss=-1.0), "z_loss: expected a number in"),
        (dict(softcap=0.0), r"softcap: expected a number in \(0.0, inf\]"),
        (dict(reduction="avg"), "reduction: expected one of mean, sum, none, got 'avg'"),
        (dict(reduction="none", normalizer=3), "normalizer: divides a summed loss"),
        (dict(weight=torch.ones(5)), "weight: expected 10 class weights"),
        (dict(labels=torch.zeros(4)), "labels: expected dtype int64, int32, got float32"),
        (dict(labels=torch.zeros(5, dtype=torch.int64)), r"labels: expected shape \(4,\)"),
        (dict(logits=torch.zeros(4, 10, dtype=torch.int64)), "logits: expected dtype"),
        (dict(backend="gpu"), "backend: expected one of"),
        (dict(logits=torch.zeros(4, 0)), r"logits: expected at least one class, got shape \(4, 0\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = dict(logits=torch.zeros(4, 10), labels=torch.tensor([1, 2, IGNORE, 3])) | kwargs
    with pytest.raises(ValueError, match=message):
        fastmask.masked_cross_entropy(args.pop("logits"), args.pop("labels"), **args)


# --- ops, compile, module ---------------------------------------------------------------------


def test_opcheck(backend):
    logits, labels = make(6, 20, torch.float32, ignored=0.4, device=device_for(backend))
    options = (IGNORE, 0.1, 1e-3, 5.0, backend)
    torch.library.opcheck(torch.ops.fastmask.ce_forward.default, (logits.requires_grad_(True), labels, None, *options))
    lse = fastmask.masked_cross_entropy(logits, labels, return_lse=True, backend=backend)[1].detach()
    torch.library.opcheck(torch.ops.fastmask.ce_backward.default,
                          (logits.detach(), labels, None, lse, torch.ones(6, device=logits.device), None, *options))
    torch.library.opcheck(torch.ops.fastmask.ce_backward.default,
                          (logits.detach(), labels, None, lse, torch.ones(6, device=logits.device),
                           torch.full((6,), 0.5, device=logits.device), *options))


def test_compile_fullgraph(backend):
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")

    def step(x, y, n):
        return fastmask.masked_cross_entropy(x, y, normalizer=n, z_loss=1e-3, backend=backend)

    compiled = torch.compile(step, backend=counter, fullgraph=True)
    logits, labels = make(12, 33, torch.float32, ignored=0.5, device=device_for(backend))
    got = loss_and_grad(lambda x, y: compiled(x, y, torch.tensor(5.0, device=x.device)), logits, labels)
    expected = loss_and_grad(lambda x, y: step(x, y, torch.tensor(5.0, device=x.device)), logits, labels)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])


def test_module_matches_functional_and_torch_names():
    logits, labels = make(10, 20, torch.float32, ignored=0.5)
    weight = torch.rand(20)
    module = fastmask.nn.MaskedCrossEntropyLoss(weight=weight, ignore_index=IGNORE, reduction="sum", label_smoothing=0.1)
    torch.testing.assert_close(module(logits, labels), F.cross_entropy(logits, labels, weight=weight, reduction="sum", label_smoothing=0.1))
    assert "weight" in dict(module.named_buffers())


@pytest.mark.parametrize("simd", [True, False])
def test_cpp_exp_and_half_conversions(simd):
    """The C++ kernel's own exp (within 2 ulp of exp in fp32) and its bf16/fp16 conversions (exact,
    round to nearest even, as torch)."""
    from fastmask import _C
    from fastmask.cpp import DTYPE_CODES

    x = torch.cat([torch.linspace(-100, 88, 200_001), torch.tensor([float("-inf"), 0.0, -1e-30, float("nan")])])
    out = torch.empty_like(x)
    _C.cross_entropy_exp(x.data_ptr(), out.data_ptr(), x.numel(), simd)
    exact = torch.exp(x.double())
    ulp = torch.nextafter(exact.float(), torch.tensor(float("inf"))) - exact.float()
    finite = torch.isfinite(exact) & (exact > 1.2e-38)
    assert ((out.double() - exact).abs()[finite] <= 2 * ulp.double()[finite]).all()
    assert out[-4] == 0 and out[-3] == 1 and torch.isnan(out[-1])
    values = torch.randn(100_000) * 1000
    for dtype in (torch.bfloat16, torch.float16):
        half = torch.empty(values.shape, dtype=dtype)
        _C.cross_entropy_convert(values.data_ptr(), DTYPE_CODES[torch.float32], half.data_ptr(), DTYPE_CODES[dtype], values.numel(), simd)
        assert torch.equal(half, values.to(dtype))
        back = torch.empty_like(values)
        _C.cross_entropy_convert(half.data_ptr(), DTYPE_CODES[dtype], back.data_ptr(), DTYPE_CODES[torch.float32], values.numel(), simd)
        assert torch.equal(back, half.float())
