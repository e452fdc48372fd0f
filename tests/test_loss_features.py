"""The losses' precision contract (fp32 losses, autocast), the z-loss normalization, the extra outputs
(lse, z-loss, accuracy, predictions), shift, logit_scale, and the robustness rules of issue 17
(in-place backward on overlapping rows, non-finite logits, fp64 everywhere, normalizer checks), on
every backend, for masked_cross_entropy and masked_lm_loss."""
import pytest
import torch
import torch.nn.functional as F

import fastmask

from .conftest import device_for

IGNORE = -100


def make(n, vocab, dtype=torch.float32, *, ignored=0.6, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(n, vocab, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, vocab, (n,), generator=g)
    labels[torch.rand(n, generator=g) < ignored] = IGNORE
    return logits.to(device), labels.to(device)


def head(batch, length, dim, vocab, *, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, dim, generator=g, dtype=torch.float64).to(dtype)
    weight = (torch.randn(vocab, dim, generator=g, dtype=torch.float64) / dim**0.5).to(dtype)
    labels = torch.randint(0, vocab, (batch, length), generator=g)
    labels[torch.rand(batch, length, generator=g) < 0.5] = IGNORE
    return hidden, weight, labels


def grads(loss, *leaves, retain=False):
    return torch.autograd.grad(loss, leaves, retain_graph=retain)


# --- precision: fp32 losses, autocast ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_is_fp32_gradient_keeps_dtype(backend, dtype, reduction):
    logits, labels = make(10, 33, dtype, device=device_for(backend))
    x = logits.clone().requires_grad_(True)
    loss = fastmask.masked_cross_entropy(x, labels, reduction=reduction, backend=backend)
    (grad,) = grads(loss.sum(), x)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    exact = F.cross_entropy(logits.double(), labels, reduction=reduction)
    torch.testing.assert_close(loss.double(), torch.nan_to_num(exact), atol=1e-5, rtol=1e-5)  # no rounding to dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_lm_loss_under_autocast_is_the_loss_of_precast_inputs(dtype):
    # The repro: h [8, 16], w [32, 16] with requires_grad, labels [8], in CPU autocast.
    g = torch.Generator().manual_seed(1)
    h = torch.randn(8, 16, generator=g, requires_grad=True)
    w = torch.randn(32, 16, generator=g, requires_grad=True)
    b = torch.randn(32, generator=g, requires_grad=True)
    labels = torch.randint(0, 32, (8,), generator=g)
    labels[::3] = IGNORE
    for reduction in ("mean", "none"):
        with torch.autocast("cpu", dtype=dtype):
            loss = fastmask.masked_lm_loss(h, w, labels, bias=b, reduction=reduction)
        got = grads(loss.sum(), h, w, b)
        leaves = [t.detach().to(dtype).requires_grad_(True) for t in (h, w, b)]
        expected = fastmask.masked_lm_loss(leaves[0], leaves[1], labels, bias=leaves[2], reduction=reduction)
        want = grads(expected.sum(), *leaves)
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, expected, atol=0, rtol=0)
        for a, e, leaf in zip(got, want, (h, w, b)):
            assert a.dtype == leaf.dtype  # back through the cast to the fp32 parameters
            torch.testing.assert_close(a, e.float(), atol=0, rtol=0)


@pytest.mark.parametrize("inplace", [False, True])
def test_cross_entropy_under_autocast_as_outside(backend, inplace):
    logits, labels = make(12, 40, torch.bfloat16, device=device_for(backend))
    outside = fastmask.masked_cross_entropy(logits.clone(), labels, z_loss=1e-3, backend=backend, inplace_backward=inplace)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = fastmask.masked_cross_entropy(logits.clone(), labels, z_loss=1e-3, backend=backend, inplace_backward=inplace)
    torch.testing.assert_close(inside, outside, atol=0, rtol=0)


# --- z-loss normalization, extra outputs -----------------------------------------------------------


def liger_style(logits, labels, weight, label_smoothing, z_loss):
    """The weighted cross-entropy as torch averages it, plus the z-loss averaged per labelled row
    (Liger's and PaLM's definition), in fp64."""
    x = logits.double()
    ce = F.cross_entropy(x, labels, weight=None if weight is None else weight.double(), label_smoothing=label_smoothing)
    kept = labels != IGNORE
    lse = torch.logsumexp(x[kept], dim=1)
    return ce + z_loss * (lse * lse).sum() / kept.sum()


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_z_loss_is_averaged_per_labelled_row(backend, inplace, weighted):
    logits, labels = make(16, 24, torch.float64 if backend != "triton" else torch.float32, device=device_for(backend))
    weight = torch.rand(24, dtype=logits.dtype, device=logits.device) + 0.5 if weighted else None
    x = logits.clone().requires_grad_(True)
    loss = fastmask.masked_cross_entropy(x * 1, labels, weight=weight, label_smoothing=0.1, z_loss=0.02,
                                         inplace_backward=inplace, backend=backend)
    (grad,) = grads(loss, x)
    e = logits.double().clone().requires_grad_(True)
    exact = liger_style(e, labels, weight, 0.1, 0.02)
    (exact_grad,) = grads(exact, e)
    tol = 1e-10 if logits.dtype == torch.float64 else 2e-6
    torch.testing.assert_close(loss.double(), exact, atol=tol, rtol=tol)
    torch.testing.assert_close(grad.double(), exact_grad, atol=tol, rtol=tol)


def test_extra_outputs_of_cross_entropy(backend):
    logits, labels = make(20, 30, device=device_for(backend))
    labels[3] = int(logits[3].argmax())  # at least one right prediction
    loss, lse, z, accuracy, predicted = fastmask.masked_cross_entropy(
        logits, labels, z_loss=1e-2, return_lse=True, return_z_loss=True, return_accuracy=True,
        return_predictions=True, backend=backend)
    kept = labels != IGNORE
    exact_lse = torch.where(kept, torch.logsumexp(logits.double(), 1), 0)
    torch.testing.assert_close(lse.double(), exact_lse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z.double(), 1e-2 * (exact_lse**2).sum() / kept.sum(), atol=1e-6, rtol=1e-5)
    assert torch.equal(predicted, torch.where(kept, logits.argmax(1), IGNORE))
    assert accuracy.dtype == torch.float32 and float(accuracy) == pytest.approx(float((predicted == labels)[kept].float().mean()))
    # reduction "none": the z-loss per row
    _, z_rows = fastmask.masked_cross_entropy(logits, labels, z_loss=1e-2, reduction="none", return_z_loss=True, backend=backend)
    torch.testing.assert_close(z_rows.double(), 1e-2 * exact_lse**2, atol=1e-5, rtol=1e-5)
    # no labelled row: accuracy 0, not NaN
    none = torch.full_like(labels, IGNORE)
    assert float(fastmask.masked_cross_entropy(logits, none, return_accuracy=True, backend=backend)[1]) == 0.0


def test_lse_is_differentiable(backend):
    logits, labels = make(8, 12, torch.float64 if backend != "triton" else torch.float32, device=device_for(backend))
    x = logits.clone().requires_grad_(True)
    loss, lse = fastmask.masked_cross_entropy(x, labels, z_loss=1e-3, label_smoothing=0.05, return_lse=True, backend=backend)
    (grad,) = grads(loss + (0.7 * lse).sum(), x)
    e = logits.double().clone().requires_grad_(True)
    exact_loss, exact_lse = fastmask.masked_cross_entropy(e, labels, z_loss=1e-3, label_smoothing=0.05, return_lse=True, backend="reference")
    (exact,) = grads(exact_loss + (0.7 * exact_lse).sum(), e)
    kept = (labels != IGNORE).unsqueeze(1)
    tol = 1e-10 if logits.dtype == torch.float64 else 2e-6
    torch.testing.assert_close(grad.double(), exact, atol=tol, rtol=tol)
    lse_grad = torch.where(kept, torch.softmax(e.detach(), 1), 0)  # d lse / d x = softmax on labelled rows
    only_lse = torch.autograd.grad(fastmask.masked_cross_entropy(e, labels, return_lse=True, backend="reference")[1].sum(), e)[0]
    torch.testing.assert_close(only_lse, lse_grad)


def test_shift_is_the_causal_pairing(backend):
    logits, labels = make(3 * 7, 11, device=device_for(backend), ignored=0.3)
    logits, labels = logits.reshape(3, 7, 11), labels.reshape(3, 7)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 11).double(), labels[:, 1:].reshape(-1))
    x = logits.clone().requires_grad_(True)
    loss = fastmask.masked_cross_entropy(x, labels, shift=True, backend=backend)
    torch.testing.assert_close(loss.double(), expected, atol=1e-6, rtol=1e-6)
    (grad,) = grads(loss, x)
    assert grad[:, -1].abs().max() == 0  # the last position predicts nothing
    rows = fastmask.masked_cross_entropy(logits, labels, shift=True, reduction="none", backend=backend)
    assert rows.shape == (3, 6)


def test_logit_scale(backend):
    logits, labels = make(10, 20, device=device_for(backend))
    x = logits.clone().requires_grad_(True)
    loss = fastmask.masked_cross_entropy(x, labels, logit_scale=0.25, softcap=5.0, backend=backend)
    e = logits.double().clone().requires_grad_(True)
    exact = fastmask.masked_cross_entropy(e * 0.25, labels, softcap=5.0, backend="reference")
    torch.testing.assert_close(loss.double(), exact, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grads(loss, x)[0].double(), grads(exact, e)[0], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_lm_loss_extras_match_the_dense_loss(backend, reduction):
    hidden, weight, labels = head(2, 9, 8, 40, dtype=torch.float64 if backend != "triton" else torch.float32)
    leaves = [t.clone().requires_grad_(True) for t in (hidden, weight)]
    out = fastmask.masked_lm_loss(*leaves, labels, reduction=reduction, z_loss=1e-2, logit_scale=0.5, shift=True,
                                  return_lse=True, return_z_loss=True, return_accuracy=True, return_predictions=True,
                                  backend=backend)
    dense_leaves = [t.double().clone().requires_grad_(True) for t in (hidden, weight)]
    logits = 0.5 * (dense_leaves[0] @ dense_leaves[1].T)
    want = fastmask.masked_cross_entropy(logits, labels, reduction=reduction, z_loss=1e-2, shift=True, return_lse=True,
                                         return_z_loss=True, return_accuracy=True, return_predictions=True, backend="reference")
    tol = 1e-10 if hidden.dtype == torch.float64 else 2e-5
    for got, expected in zip(out[:4], want[:4]):
        torch.testing.assert_close(got.double(), expected.double(), atol=tol, rtol=tol)
    assert torch.equal(out[4], want[4])
    for got, expected in zip(grads(out[0].sum(), *leaves, retain=True), grads(want[0].sum(), *dense_leaves, retain=True)):
        torch.testing.assert_close(got.double(), expected, atol=tol, rtol=tol)
    # reduction "none": the lse is differentiable too (a distillation term built on it)
    if reduction == "none":
        got = grads((out[0] + 0.3 * out[1]).sum(), *leaves)
        for g, e in zip(got, grads((want[0] + 0.3 * want[1]).sum(), *dense_leaves)):
            torch.testing.assert_close(g.double(), e, atol=tol, rtol=tol)


def test_lm_loss_positions_predictions_shape():
    hidden, weight, labels = head(2, 9, 8, 40)
    positions = torch.tensor([[0, 3, -1], [8, 2, 5]])
    loss, lse, predicted = fastmask.masked_lm_loss(hidden, weight, labels, positions=positions, return_lse=True,
                                                   return_predictions=True)
    assert lse.shape == predicted.shape == positions.shape
    assert int(predicted[0, 2]) == IGNORE and float(lse[0, 2]) == 0.0


# --- issue 17: overlapping rows, non-finite logits, fp64, normalizer ---------------------------------


def test_inplace_backward_refuses_rows_that_share_memory(backend):
    device = device_for(backend)
    labels = torch.tensor([1, 2, 3, IGNORE], device=device)
    expanded = torch.randn(1, 8, device=device).expand(4, 8)
    strided = torch.randn(40, device=device).as_strided((4, 8), (3, 1))
    for logits in (expanded, strided):
        with pytest.raises(ValueError, match="logits: inplace_backward=True .* share memory"):
            fastmask.masked_cross_entropy(logits, labels, inplace_backward=True, backend=backend)
        # without inplace_backward the same rows are fine, and agree with torch
        torch.testing.assert_close(fastmask.masked_cross_entropy(logits, labels, backend=backend),
                                   F.cross_entropy(logits, labels))


def test_non_finite_logits_as_torch(backend):
    device = device_for(backend)
    x = torch.zeros(6, 5, device=device)
    x[0, 1] = float("inf")   # +inf elsewhere: NaN (torch's log_softmax: inf - inf)
    x[1, 0] = float("inf")   # +inf at the label: NaN
    x[2, 2] = float("nan")   # NaN: NaN
    x[3, 3] = float("-inf")  # -inf elsewhere: finite
    x[4, 0] = float("-inf")  # -inf at the label: inf
    x[5, :] = float("nan")   # ignored row: never read, loss 0 and gradient 0
    labels = torch.tensor([0, 0, 0, 0, 0, IGNORE], device=device)
    expected = F.cross_entropy(x, labels, reduction="none")
    for inplace in (False, True):
        leaf = x.clone().requires_grad_(True)
        rows = leaf * 1
        got = fastmask.masked_cross_entropy(rows, labels, reduction="none", inplace_backward=inplace, backend=backend)
        torch.testing.assert_close(got, expected, equal_nan=True)
        (grad,) = grads(got[:5].nan_to_num().sum() + 0 * got[5], leaf)
        assert grad[:3].isnan().all() and grad[3].isfinite().all() and (grad[5] == 0).all()


def test_softcap_keeps_infinite_logits_finite(backend):
    x = torch.zeros(2, 4, device=device_for(backend))
    x[:, 1] = float("inf")
    got = fastmask.masked_cross_entropy(x, torch.tensor([0, 1], device=x.device), softcap=3.0, reduction="none", backend=backend)
    z = 3.0 * torch.tanh(x / 3.0)
    torch.testing.assert_close(got, F.cross_entropy(z, torch.tensor([0, 1], device=x.device), reduction="none"))


def test_fp64_on_every_backend(backend):
    logits, labels = make(9, 17, torch.float64, device=device_for(backend))
    x = logits.clone().requires_grad_(True)
    loss = fastmask.masked_cross_entropy(x, labels, label_smoothing=0.1, backend=backend)
    assert loss.dtype == torch.float64
    e = logits.clone().requires_grad_(True)
    exact = F.cross_entropy(e, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss, exact, atol=1e-7, rtol=1e-7)  # Triton takes its scalars in fp32
    torch.testing.assert_close(grads(loss, x)[0], grads(exact, e)[0], atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("normalizer, message", [
    ("x", "normalizer: expected a number"), (True, "normalizer: expected a number"), (0, "normalizer: expected a number in"),
    (float("nan"), "normalizer"), (torch.ones(2), "normalizer: expected a number or a one-element"),
    (torch.tensor(True), "normalizer: expected a number or a one-element"),
])
def test_normalizer_errors(normalizer, message):
    logits, labels = make(4, 6)
    with pytest.raises(ValueError, match=message):
        fastmask.masked_cross_entropy(logits, labels, normalizer=normalizer)
    hidden, weight, labels = head(1, 4, 3, 6)
    with pytest.raises(ValueError, match=message):
        fastmask.masked_lm_loss(hidden, weight, labels, normalizer=normalizer)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), "2"])
def test_logit_scale_errors(bad):
    logits, labels = make(4, 6)
    with pytest.raises(ValueError, match="logit_scale"):
        fastmask.masked_cross_entropy(logits, labels, logit_scale=bad)


def test_modules_keep_z_loss_and_accuracy():
    logits, labels = make(12, 20)
    module = fastmask.nn.MaskedCrossEntropyLoss(z_loss=1e-2, return_z_loss=True, return_accuracy=True)
    loss = module(logits, labels)
    want = fastmask.masked_cross_entropy(logits, labels, z_loss=1e-2, return_z_loss=True, return_accuracy=True)
    assert torch.equal(loss, want[0]) and torch.equal(module.z_loss_value, want[1]) and torch.equal(module.accuracy, want[2])
    hidden, weight, labels = head(2, 5, 4, 20)
    module = fastmask.nn.MaskedLMLoss(return_accuracy=True, shift=True)
    loss = module(hidden, weight, labels)
    want = fastmask.masked_lm_loss(hidden, weight, labels, shift=True, return_accuracy=True)
    assert torch.equal(loss, want[0]) and torch.equal(module.accuracy, want[1]) and module.z_loss_value is None


def test_large_gradient_leaves_ignored_rows_untouched_and_zero():
    # >= 16 MiB of gradient: the C++ backward writes into fresh zero pages and skips ignored rows.
    logits, labels = make(72, 1 << 16, ignored=0.9, seed=4)
    x = logits.clone().requires_grad_(True)
    loss = fastmask.masked_cross_entropy(x, labels, label_smoothing=0.1, backend="cpp")
    (grad,) = grads(loss, x)
    e = logits.clone().requires_grad_(True)
    (want,) = grads(fastmask.masked_cross_entropy(e, labels, label_smoothing=0.1, backend="reference"), e)
    torch.testing.assert_close(grad, want, atol=1e-9, rtol=1e-5)
    assert (grad[labels == IGNORE] == 0).all()
    grad.add_(1.0)  # an ordinary writable tensor


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_argmax_kernel_is_torch_argmax_on_labelled_rows(backend, dtype):
    device = device_for(backend)
    g = torch.Generator().manual_seed(6)
    logits = torch.randint(-3, 4, (9, 600), generator=g).to(dtype)  # many ties, across chunks of 256
    logits[1, 300] = 100.0                   # the largest in a later chunk
    logits[2, :] = float("-inf")             # all -inf: index 0
    logits[3, 10] = float("nan")             # NaN wins
    logits[3, 500] = float("nan")            # the first NaN
    logits[4, 599] = float("inf")            # +inf at the last column
    logits[5, 257] = logits[5, 3] = 50.0     # a tie across chunks: the first
    labels = torch.tensor([1, 2, 3, -100, 5, 6, -100, 8, 9]).to(device)
    logits = logits.to(device)
    got = torch.ops.fastmask.ce_argmax(logits, labels, -100, backend)
    want = torch.where(labels != -100, logits.argmax(1), -100)
    assert torch.equal(got, want)


def test_argmax_opcheck():
    logits, labels = make(6, 20)
    torch.library.opcheck(torch.ops.fastmask.ce_argmax.default, (logits, labels, IGNORE, "cpp"))
