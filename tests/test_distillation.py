"""masked_distillation_loss: both LM heads and the divergence on the predicted rows only, against the
dense recipe (every row's logits, then the masked rows selected, then F.kl_div with log_target as
HF's distillation example computes it, plus the masked-LM cross-entropy) for the loss and the
student's gradients; every backend, divergence, temperature and hard weight; Liger's JSD / KL test
cases ported beside their own torch oracles; the kernel op, compile, meta, errors."""
import csv

import pytest
import torch
import torch.nn.functional as F

import fastmask

from .conftest import BACKENDS, device_for

IGNORE = -100


def make(batch, length, s_dim, t_dim, vocab, *, labelled=0.4, dtype=torch.float64, seed=0, device="cpu", scale=2.0):
    g = torch.Generator().manual_seed(seed)
    tensors = [
        torch.randn(batch, length, s_dim, generator=g, dtype=torch.float64),
        scale * torch.randn(vocab, s_dim, generator=g, dtype=torch.float64) / s_dim**0.5,
        torch.randn(vocab, generator=g, dtype=torch.float64),
        torch.randn(batch, length, t_dim, generator=g, dtype=torch.float64),
        scale * torch.randn(vocab, t_dim, generator=g, dtype=torch.float64) / t_dim**0.5,
        torch.randn(vocab, generator=g, dtype=torch.float64),
    ]
    labels = torch.randint(0, vocab, (batch, length), generator=g)
    labels[torch.rand(batch, length, generator=g) >= labelled] = IGNORE
    return [t.to(dtype).to(device) for t in tensors] + [labels.to(device)]


def divergence_rows(log_q, log_p, divergence, beta):
    """Per-row divergence of the student's log-probabilities log_q from the teacher's log_p, written
    with F.kl_div(input, target, log_target=True) = sum target.exp() * (target - input), as HF's
    distillation example and Liger's test oracles write it."""
    kl = lambda inp, target: F.kl_div(inp, target, reduction="none", log_target=True).sum(-1)  # noqa: E731
    if divergence == "kl" or (divergence == "jsd" and beta == 0):
        return kl(log_q, log_p)
    if divergence == "reverse_kl" or (divergence == "jsd" and beta == 1):
        return kl(log_p, log_q)
    log_m = torch.log(torch.lerp(log_q.exp(), log_p.exp(), beta))
    return beta * kl(log_m, log_p) + (1 - beta) * kl(log_m, log_q)


def dense(sh, sw, sb, th, tw, tb, labels, *, temperature=1.0, divergence="kl", jsd_beta=0.5, hard_weight=0.0, reduction="mean"):
    """The usual recipe: both heads on every row, then the masked rows, then the losses."""
    student = F.linear(sh, sw, sb).reshape(-1, sw.shape[0])
    with torch.no_grad():
        teacher = F.linear(th, tw, tb).reshape(-1, tw.shape[0])
    kept = labels.reshape(-1) != IGNORE
    s, t, y = student[kept].double(), teacher[kept].double(), labels.reshape(-1)[kept]
    rows = temperature**2 * divergence_rows(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1),
                                            divergence, jsd_beta)
    rows = rows + hard_weight * F.cross_entropy(s, y, reduction="none")
    if reduction == "none":
        return torch.zeros(kept.shape, dtype=rows.dtype).masked_scatter(kept, rows).reshape(labels.shape)
    return rows.sum() / (max(int(kept.sum()), 1) if reduction == "mean" else 1)


def loss_and_grads(fn, tensors, labels, **kwargs):
    sh, sw, sb, th, tw, tb = tensors
    leaves = [t.detach().clone().requires_grad_(True) for t in (sh, sw, sb)]
    loss = fn(*leaves, th, tw, tb, labels, **kwargs)
    grads = torch.autograd.grad(loss, leaves, torch.ones_like(loss))
    return (loss.detach(), *grads)


def sparse(backend, **fixed):
    def fn(sh, sw, sb, th, tw, tb, labels, **kwargs):
        return fastmask.masked_distillation_loss(sh, sw, th, tw, labels, student_bias=sb, teacher_bias=tb,
                                                 backend=backend, **fixed, **kwargs)
    return fn


def assert_all_close(got, expected, tol):
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        torch.testing.assert_close(g.double(), e.double(), atol=tol, rtol=tol)


def precision(backend):
    return (torch.float32, 2e-5) if backend == "triton" else (torch.float64, 1e-10)


# --- against the dense recipe -----------------------------------------------------------------------


@pytest.mark.parametrize("divergence, jsd_beta", [("kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1),
                                                  ("jsd", 0.0), ("jsd", 1.0)])
@pytest.mark.parametrize("temperature, hard_weight", [(1.0, 0.0), (2.0, 0.5), (0.7, 1.0)])
def test_equals_dense_recipe(backend, divergence, jsd_beta, temperature, hard_weight):
    dtype, tol = precision(backend)
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 9, 8, 12, 37, dtype=dtype, device=device_for(backend)))
    options = dict(temperature=temperature, divergence=divergence, jsd_beta=jsd_beta, hard_weight=hard_weight)
    got = loss_and_grads(sparse(backend, chunk_size=4), tensors, labels, **options)
    assert_all_close(got, loss_and_grads(dense, tensors, labels, **options), tol)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_reductions(backend, reduction):
    dtype, tol = precision(backend)
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 7, 6, 5, 23, dtype=dtype, device=device_for(backend), seed=1))
    options = dict(temperature=1.5, hard_weight=0.3, reduction=reduction)
    got = loss_and_grads(sparse(backend, chunk_size=3), tensors, labels, **options)
    assert_all_close(got, loss_and_grads(dense, tensors, labels, **options), tol)


@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "jsd"])
def test_bf16_within_twice_torch_error(backend, divergence):
    """bf16 inputs: the error against an fp64 dense recipe is at most twice torch's bf16 recipe's, plus atol."""
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 6, 32, 48, 301, seed=2, device=device_for(backend)))
    options = dict(temperature=2.0, divergence=divergence, hard_weight=0.5)
    exact = loss_and_grads(dense, tensors, labels, **options)
    low = [t.to(torch.bfloat16) for t in tensors]
    torch_bf16 = loss_and_grads(dense, low, labels, **options)
    got = loss_and_grads(sparse(backend), low, labels, **options)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.bfloat16
    for g, t, e in zip(got, torch_bf16, exact):
        torch_error = (t.double() - e.double()).abs().max()
        assert (g.double() - e.double()).abs().max() <= 2 * torch_error + 1e-3


def test_all_ignored_batch_gives_zero(backend):
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 5, 4, 4, 11, dtype=precision(backend)[0], device=device_for(backend)))
    labels = torch.full_like(labels, IGNORE)
    for reduction in ("mean", "sum"):
        loss, *grads = loss_and_grads(sparse(backend, hard_weight=1.0), tensors, labels, reduction=reduction)
        assert float(loss) == 0.0
        assert all(bool((g == 0).all()) for g in grads)


def test_ignored_rows_and_custom_ignore_index(backend):
    """Rows labelled ignore_index contribute nothing, whatever their logits (here huge ones)."""
    dtype, tol = precision(backend)
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 6, 4, 4, 13, dtype=dtype, device=device_for(backend), seed=3))
    ignored = labels == IGNORE
    tensors[0] = torch.where(ignored.unsqueeze(-1), 1e4, tensors[0])
    got = loss_and_grads(sparse(backend, ignore_index=99, hard_weight=0.5), tensors, labels.masked_fill(ignored, 99))
    assert_all_close(got, loss_and_grads(dense, tensors, labels, hard_weight=0.5), tol)


def test_positions_and_max_rows_select_as_masked_lm_loss(backend):
    dtype, tol = precision(backend)
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 8, 4, 6, 17, dtype=dtype, device=device_for(backend), seed=4))
    positions = torch.tensor([[0, 3, -1], [5, 1, 7]], device=labels.device)
    chosen = torch.zeros_like(labels, dtype=torch.bool)
    chosen[torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 3, 5, 1, 7])] = True
    got = loss_and_grads(sparse(backend, positions=positions), tensors, labels, hard_weight=0.2)
    assert_all_close(got, loss_and_grads(dense, tensors, torch.where(chosen, labels, IGNORE), hard_weight=0.2), tol)
    first = ((labels != IGNORE).reshape(-1).cumsum(0) <= 3).reshape(labels.shape)
    got = loss_and_grads(sparse(backend, max_rows=3), tensors, labels)
    assert_all_close(got, loss_and_grads(dense, tensors, torch.where(first, labels, IGNORE)), tol)


def test_teacher_gets_no_gradient_and_may_run_under_no_grad():
    tensors, labels = (lambda t: (t[:6], t[6]))(make(1, 6, 4, 5, 9, dtype=torch.float32))
    sh, sw, sb, th, tw, tb = tensors
    th, tw = th.clone().requires_grad_(True), tw.clone().requires_grad_(True)
    loss = fastmask.masked_distillation_loss(sh.requires_grad_(True), sw, th, tw, labels, hard_weight=1.0)
    loss.backward()
    assert th.grad is None and tw.grad is None and sh.grad is not None


def test_autocast_runs_the_heads_in_its_dtype():
    """Under autocast the heads run in bf16 (as nn.Linear would): the loss of bf16-cast inputs, fp32
    gradients for the fp32 leaves."""
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 8, 16, 24, 53, dtype=torch.float32, seed=6))
    fn = sparse("auto", temperature=2.0, hard_weight=0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss_and_grads(fn, tensors, labels)
    expected = loss_and_grads(fn, [t.to(torch.bfloat16) for t in tensors], labels)
    assert got[0].dtype == torch.float32 and all(g.dtype == torch.float32 for g in got[1:])
    assert_all_close(got, expected, 1e-6)


def test_kernel_matches_reference_with_strided_rows_and_row_scales():
    """The chunk op itself, C++ (AVX2 and portable rows) and Triton against the reference: per-row
    upstream scales, strided rows, every dtype, V not a multiple of the vector width."""
    from fastmask.cpp import cpp

    g = torch.Generator().manual_seed(5)
    for dtype, tol in ((torch.float32, 2e-5), (torch.bfloat16, 1e-2), (torch.float16, 2e-3), (torch.float64, 1e-12)):
        wide = (3 * torch.randn(5, 2 * 131, generator=g)).to(dtype)
        student, teacher = wide[:, :131], (3 * torch.randn(5, 131, generator=g)).to(dtype)
        labels = torch.tensor([3, IGNORE, 130, 0, 64])
        scale = torch.rand(5, generator=g, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
        for divergence, beta in ((0, 0.5), (1, 0.5), (2, 0.25)):
            args = (teacher, labels, scale, 1.7, divergence, beta, 0.6, IGNORE, True)
            expected_grad = student.clone()
            expected = torch.ops.fastmask.distill_chunk(expected_grad, *args, "reference")
            for backend, simd in (("cpp", True), ("cpp", False), ("triton", None)):
                if backend == "triton" and dtype == torch.float64:
                    continue
                if simd is not None:
                    cpp().distillation_simd(simd)
                grad = student.clone()
                got = torch.ops.fastmask.distill_chunk(grad, *args, backend)
                cpp().distillation_simd(True)
                for a, b in zip(got, expected):
                    torch.testing.assert_close(a, b, atol=tol, rtol=tol)
                torch.testing.assert_close(grad, expected_grad, atol=tol, rtol=tol)


def test_cpp_rows_in_parallel_give_the_same_bits():
    g = torch.Generator().manual_seed(8)
    student, teacher = torch.randn(9, 517, generator=g), torch.randn(9, 517, generator=g)
    labels = torch.tensor([3, IGNORE, 516, 0, 64, 1, 2, IGNORE, 9])
    args = (teacher, labels, torch.full((9,), 0.25), 2.0, 0, 0.5, 0.4, IGNORE, True, "cpp")
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            grad = student.clone()
            results.append((*torch.ops.fastmask.distill_chunk(grad, *args), grad))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results))


# --- Liger's JSD / KL cases, beside their own torch oracles ----------------------------------------


def liger_jsd_oracle(log_q, log_p, beta, labels=None, ignore_index=IGNORE):
    """Liger's test oracle (test/transformers/test_jsd.py): log_q the input (student), log_p the
    target (teacher); beta 0 is KL(p || q), 1 is KL(q || p); mean over non-ignored rows."""
    loss = divergence_rows(log_q, log_p, "jsd", beta)
    if labels is None:
        return loss.sum() / log_q.shape[0]
    kept = labels != ignore_index
    return torch.where(kept, loss, 0).sum() / max(int(kept.sum()), 1)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("shape", [(1, 12, 320), (3, 5, 127)])
def test_liger_jsd_cases(backend, beta, shape):
    """test_jsd.py: log-softmax inputs and targets, each beta, with and without ignored labels.
    An identity head (D = V, W = I) turns our linear loss into the loss on given logits."""
    batch, length, vocab = shape
    dtype, tol = precision(backend)
    device = device_for(backend)
    g = torch.Generator().manual_seed(42)
    logits_q = torch.randn(batch * length, vocab, generator=g, dtype=torch.float64).to(dtype).to(device)
    logits_p = torch.randn(batch * length, vocab, generator=g, dtype=torch.float64).to(dtype).to(device)
    labels = torch.randint(0, vocab, (batch * length,), generator=g)
    labels[torch.randperm(batch * length, generator=g)[: batch * length // 3]] = 2
    eye = torch.eye(vocab, dtype=dtype, device=device)
    for case_labels, ignore in ((torch.zeros_like(labels), IGNORE), (labels, 2)):
        case_labels = case_labels.to(device)
        x1 = logits_q.clone().requires_grad_(True)
        x2 = logits_q.clone().requires_grad_(True)
        expected = liger_jsd_oracle(F.log_softmax(x1, -1), F.log_softmax(logits_p, -1), beta, case_labels, ignore)
        got = fastmask.masked_distillation_loss(x2, eye, logits_p, eye, case_labels, divergence="jsd", jsd_beta=beta,
                                                ignore_index=ignore, backend=backend)
        torch.testing.assert_close(got.double(), expected.double(), atol=tol, rtol=tol)
        (2.0 * expected).backward()  # not the last layer: an upstream gradient of 2
        (2.0 * got).backward()
        torch.testing.assert_close(x2.grad.double(), x1.grad.double(), atol=tol, rtol=tol)


@pytest.mark.parametrize("temperature, beta", [(1.0, 0.5), (2.0, 0.1), (1.0, 0.0), (1.0, 1.0)])
def test_liger_fused_linear_jsd_cases(backend, temperature, beta):
    """test_fused_linear_jsd.py: a student head of width H // 2, a teacher of width H, rand inputs,
    ignored labels; Liger has no T^2 factor, so our loss is T^2 times its oracle."""
    dtype, tol = precision(backend)
    device = device_for(backend)
    batch, length, hidden, vocab = 4, 9, 34, 143
    g = torch.Generator().manual_seed(7)
    sw = torch.rand(vocab, hidden // 2, generator=g, dtype=torch.float64).to(dtype).to(device)
    tw = torch.rand(vocab, hidden, generator=g, dtype=torch.float64).to(dtype).to(device)
    sh = torch.rand(batch * length, hidden // 2, generator=g, dtype=torch.float64).to(dtype).to(device)
    th = torch.rand(batch * length, hidden, generator=g, dtype=torch.float64).to(dtype).to(device)
    labels = torch.randint(0, vocab, (batch * length,), generator=g)
    labels[torch.randperm(batch * length, generator=g)[:12]] = 42
    labels = labels.to(device)
    leaves1 = [t.clone().requires_grad_(True) for t in (sh, sw)]
    leaves2 = [t.clone().requires_grad_(True) for t in (sh, sw)]
    log_q = F.log_softmax((leaves1[0] @ leaves1[1].T) / temperature, -1)
    log_p = F.log_softmax((th @ tw.T) / temperature, -1)
    expected = temperature**2 * liger_jsd_oracle(log_q, log_p, beta, labels, 42)
    got = fastmask.masked_distillation_loss(*leaves2, th, tw, labels, temperature=temperature, divergence="jsd",
                                            jsd_beta=beta, ignore_index=42, backend=backend)
    torch.testing.assert_close(got.double(), expected.double(), atol=tol, rtol=tol)
    expected.backward()
    got.backward()
    for a, b in zip(leaves2, leaves1):
        torch.testing.assert_close(a.grad.double(), b.grad.double(), atol=tol, rtol=tol)


def test_liger_kl_div_case(backend):
    """test_kl_div.py: KLDivLoss(reduction="batchmean") of log-softmax inputs against a softmax target
    is our "kl" (teacher || student) on every row."""
    dtype, tol = precision(backend)
    device = device_for(backend)
    g = torch.Generator().manual_seed(0)
    rows, vocab = 3 * 11, 320
    x = torch.randn(rows, vocab, generator=g, dtype=torch.float64).to(dtype).to(device)
    target_logits = torch.randn(rows, vocab, generator=g, dtype=torch.float64).to(dtype).to(device)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    expected = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(x1, -1), target_logits.softmax(-1))
    eye = torch.eye(vocab, dtype=dtype, device=device)
    got = fastmask.masked_distillation_loss(x2, eye, target_logits, eye, torch.zeros(rows, dtype=torch.int64, device=device),
                                            backend=backend)
    torch.testing.assert_close(got.double(), expected.double(), atol=tol, rtol=tol)
    expected.backward()
    got.backward()
    torch.testing.assert_close(x2.grad.double(), x1.grad.double(), atol=tol, rtol=tol)


def test_trainer_recipe_on_tiny_berts():
    """docs/distillation.md's compute_loss: base models' hidden states through the MLM head's transform,
    the decoders' weights; equal to the dense recipe on the models' own logits, gradients included."""
    transformers = pytest.importorskip("transformers")

    def bert(layers, seed):
        torch.manual_seed(seed)
        config = transformers.BertConfig(vocab_size=61, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=32)
        return transformers.BertForMaskedLM(config).double().eval()

    student, teacher = bert(1, 0), bert(2, 1).requires_grad_(False)
    ids = torch.randint(5, 61, (2, 12), generator=torch.Generator().manual_seed(3))
    masked = fastmask.mask_tokens(ids, seed=1, mask_token_id=4, vocab_size=61, mlm_probability=0.3)
    batch = dict(input_ids=masked.input_ids, attention_mask=torch.ones_like(ids), labels=masked.labels)

    def head_inputs(model):
        outputs = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   output_hidden_states=True)
        head = model.cls.predictions
        return head.transform(outputs.hidden_states[-1]), head.decoder.weight, head.decoder.bias

    hidden, weight, bias = head_inputs(student)
    with torch.no_grad():
        t_hidden, t_weight, t_bias = head_inputs(teacher)
    loss = fastmask.nn.MaskedDistillationLoss(temperature=2.0, hard_weight=0.4)(
        hidden, weight, t_hidden, t_weight, batch["labels"], student_bias=bias, teacher_bias=t_bias)
    params = [p for p in student.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)

    kept = batch["labels"] != IGNORE
    s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[kept]
    with torch.no_grad():
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[kept]
    expected = 4.0 * F.kl_div(F.log_softmax(s / 2, -1), F.log_softmax(t / 2, -1), log_target=True, reduction="batchmean")
    expected = expected + 0.4 * F.cross_entropy(s, batch["labels"][kept])
    torch.testing.assert_close(loss.double(), expected)
    for got, want in zip(grads, torch.autograd.grad(expected, params, allow_unused=True)):
        if want is None:
            assert got is None or bool((got == 0).all())
        else:
            torch.testing.assert_close(got, want)


# --- the op, compile, meta, module, errors ----------------------------------------------------------


def test_opcheck(backend):
    device = device_for(backend)
    g = torch.Generator().manual_seed(9)
    student = torch.randn(6, 40, generator=g).to(device)
    teacher = torch.randn(6, 40, generator=g).to(device)
    labels = torch.tensor([1, IGNORE, 5, 39, 0, 7], device=device)
    for divergence, write_grad in ((0, True), (2, False)):
        torch.library.opcheck(torch.ops.fastmask.distill_chunk.default,
                              (student.clone(), teacher, labels, torch.full((6,), 0.5, device=device), 2.0, divergence,
                               0.3, 0.5, IGNORE, write_grad, backend))


def test_meta_inputs_reach_the_fake_kernel():
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 6, 4, 5, 9, dtype=torch.float32, device="meta"))
    for reduction in ("mean", "none"):
        loss = fastmask.masked_distillation_loss(tensors[0], tensors[1], tensors[3], tensors[4], labels, reduction=reduction)
        assert loss.device.type == "meta" and loss.shape == (() if reduction == "mean" else (2, 6))


@pytest.mark.parametrize("kwargs", [dict(max_rows=6), dict(positions=torch.tensor([[0, 2, -1], [4, 5, 1]]))])
def test_compile_fullgraph(kwargs):
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 6, 4, 5, 13, dtype=torch.float32, seed=12))

    def step(sh, sw, sb, th, tw, tb, y):
        return fastmask.masked_distillation_loss(sh, sw, th, tw, y, student_bias=sb, teacher_bias=tb, temperature=2.0,
                                                 hard_weight=0.5, chunk_size=4, **kwargs)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    assert_all_close(loss_and_grads(compiled, tensors, labels), loss_and_grads(step, tensors, labels), 1e-5)


def test_module_matches_functional():
    tensors, labels = (lambda t: (t[:6], t[6]))(make(2, 6, 4, 5, 13, dtype=torch.float32, seed=13))
    sh, sw, sb, th, tw, tb = tensors
    module = fastmask.nn.MaskedDistillationLoss(temperature=2.0, divergence="reverse_kl", hard_weight=0.5)
    expected = fastmask.masked_distillation_loss(sh, sw, th, tw, labels, student_bias=sb, teacher_bias=tb,
                                                 temperature=2.0, divergence="reverse_kl", hard_weight=0.5)
    torch.testing.assert_close(module(sh, sw, th, tw, labels, student_bias=sb, teacher_bias=tb), expected)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(temperature=0.0), ValueError, r"temperature: expected a number in \(0"),
    (dict(divergence="kld"), ValueError, "divergence: expected one of kl, reverse_kl, jsd"),
    (dict(jsd_beta=1.5), ValueError, r"jsd_beta: expected a number in \[0.0, 1.0\]"),
    (dict(hard_weight=-1.0), ValueError, "hard_weight: expected a number in"),
    (dict(reduction="avg"), ValueError, "reduction: expected one of"),
    (dict(process_group=object()), NotImplementedError, "process_group: vocab-parallel distillation"),
    (dict(teacher_weight=torch.zeros(12, 5)), ValueError, "teacher_weight: expected the student's vocabulary of 13"),
    (dict(teacher_weight=torch.zeros(13, 4)), ValueError, r"teacher_weight: expected \[V >= 1, 5\]"),
    (dict(student_bias=torch.zeros(12)), ValueError, r"student_bias: expected \[13\]"),
    (dict(teacher_hidden=torch.zeros(2, 7, 5)), ValueError, r"teacher_hidden: expected shape \(2, 6\)"),
    (dict(labels=torch.full((2, 6), 13)), ValueError, r"labels: label 13 at row 0 is outside \[0, 13\)"),
    (dict(max_rows=0), ValueError, "max_rows: expected an integer in"),
    (dict(backend="cuda"), ValueError, "backend: expected one of"),
])
def test_errors_name_the_argument(kwargs, error, message):
    sh, sw, _, th, tw, _, labels = make(2, 6, 4, 5, 13, dtype=torch.float32)
    args = dict(student_hidden=sh, student_weight=sw, teacher_hidden=th, teacher_weight=tw, labels=labels)
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(error, match=message):
        fastmask.masked_distillation_loss(**args, **kwargs)


def test_bench_case_providers_agree_and_record_workspace(tmp_path, monkeypatch):
    from fastmask.bench import __main__ as cli
    from fastmask.bench.cases import FAMILIES, distillation

    monkeypatch.setattr(distillation, "QUICK_CPU_SHAPES", [(2, 32, 8, 300)])
    (case,) = FAMILIES["distillation"]("cpu", True)
    losses = {name: float(fn().detach()) for name, fn in case.providers.items()}
    assert set(losses) == {"dense recipe", "torch gathered rows", "fastmask-cpp"}
    assert max(losses.values()) - min(losses.values()) < 1e-4
    path = tmp_path / "out.csv"
    cli.main(["--quick", "--only", "distillation", "--csv", str(path), "--no-plots"])
    with path.open(newline="") as f:
        got = {(r["provider"], r["metric"]): float(r["median"]) for r in csv.DictReader(f)}
    assert got[("fastmask-cpp", "workspace_bytes")] < got[("torch gathered rows", "workspace_bytes")]
