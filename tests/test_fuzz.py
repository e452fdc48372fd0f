"""Fuzz every public op and collator with bad and odd inputs (issue 17): dtypes, ranks, empty, huge,
non-contiguous, expanded, overlapping (as_strided), meta, out-of-range ids, NaN/inf, bad seeds and keys.

Each probe runs in a child process (a worker that is restarted when it dies), so a segfault or a
hang fails the test instead of pytest. A probe passes when, on every backend, the op either raises a
ValueError/TypeError whose message starts with the argument it names, or returns outputs that satisfy
the op's contract (shapes, dtypes, ids in the vocabulary, exact counts, inputs unmodified, meta in ->
meta out); and the backends agree on raising and on their outputs.

Profiles: CI (a few hundred probes, about 2 minutes on a loaded 2-core machine); FASTMASK_FUZZ=long
for about ten times as many (FASTMASK_FUZZ_EXAMPLES=N sets the examples per test)."""
from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LONG = os.environ.get("FASTMASK_FUZZ") == "long"
EXAMPLES = int(os.environ.get("FASTMASK_FUZZ_EXAMPLES", 300 if LONG else 32))
VERBOSE = os.environ.get("FASTMASK_FUZZ_VERBOSE") == "1"  # print every probe and its outcome
TIMEOUT_S = 180  # per probe, all backends: the interpreter is slow on a loaded machine; a hang never answers
BACKENDS = ("reference", "cpp", "triton")
VOCAB = 100
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None,
                suppress_health_check=list(HealthCheck))

# --- tensors as plain data: probes cross the process boundary as picklable specs -----------------

LAYOUTS = ("contiguous", "transposed", "sliced", "expanded", "overlap", "meta")


def tensor_spec(shape, dtype="int64", low=0, high=VOCAB, layout="contiguous", seed=0, specials=()):
    """('tensor', shape, dtype, low, high, layout, seed, specials): specials are values (NaN, inf,
    huge ids) written at the first positions."""
    return ("tensor", tuple(shape), dtype, low, high, layout, seed, tuple(specials))


def build(spec):
    """The tensor a spec describes (anything else is passed as is; lists and dicts recursively)."""
    if isinstance(spec, list):
        return [build(s) for s in spec]
    if isinstance(spec, dict):
        return {k: build(v) for k, v in spec.items()}
    if not (isinstance(spec, tuple) and spec and spec[0] == "tensor"):
        return spec
    _, shape, dtype_name, low, high, layout, seed, specials = spec
    dtype = getattr(torch, dtype_name)
    if layout == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    numel = math.prod(shape)
    g = torch.Generator().manual_seed(seed)
    if layout == "overlap" and len(shape) >= 2:  # rows that share memory: stride 1 in the row dimension
        strides = (1,) + tuple(math.prod(shape[i + 1:]) for i in range(1, len(shape)))
        size = 1 + sum((n - 1) * s for n, s in zip(shape, strides)) if numel else 0
        return _values((size,), dtype, low, high, g, specials).as_strided(shape, strides)
    if layout == "expanded" and len(shape) >= 1 and numel:
        return _values((1,) + shape[1:], dtype, low, high, g, specials).expand(shape)
    if layout == "transposed" and len(shape) == 2:
        return _values(shape[::-1], dtype, low, high, g, specials).t()
    if layout == "sliced" and len(shape) >= 1:
        return _values(shape[:-1] + (2 * shape[-1],), dtype, low, high, g, specials)[..., ::2]
    return _values(shape, dtype, low, high, g, specials)


def _values(shape, dtype, low, high, g, specials):
    if dtype.is_floating_point:
        out = (torch.randn(shape, generator=g, dtype=torch.float64) * max(1.0, float(high) / 10)).to(dtype)
    elif dtype == torch.bool:
        out = torch.randint(0, 2, shape, generator=g).bool()
    else:
        info = torch.iinfo(dtype)
        lo, hi = max(int(low), info.min), min(int(high), info.max)
        out = (torch.randint(0, 1 << 62, shape, generator=g) % max(hi - lo, 1) + lo).to(dtype)
    flat = out.reshape(-1)
    for i, value in enumerate(specials[: flat.numel()]):
        if dtype.is_floating_point or dtype == torch.bool:
            flat[i] = value
        elif torch.iinfo(dtype).min <= value <= torch.iinfo(dtype).max:
            flat[i] = value
    return out


# --- the child: run one probe on every backend --------------------------------------------------------


def _serve(conn):
    import resource

    if not torch.cuda.is_available():  # as tests/conftest.py: Triton runs in its interpreter without a GPU
        os.environ.setdefault("TRITON_INTERPRET", "1")
    try:  # a probe that slips past the size checks fails to allocate instead of taking the machine's memory
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        resource.setrlimit(resource.RLIMIT_AS, (min(16 << 30, total // 2), resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ValueError, OSError):
        pass
    torch.set_num_threads(1)
    import fastmask  # noqa: F401  (imports the ops once per worker)

    while True:
        probe = conn.recv()
        conn.send(run_probe(probe))


def run_probe(probe):
    """{backend: ('raise', type, message) | ('ok', digest, violations)}."""
    results = {}
    for backend in probe["backends"]:
        args = build(probe["args"])
        if backend == "triton" and torch.cuda.is_available():
            args = _on_gpu(probe["op"], args)
        inputs = {k: v for k, v in args.items() if not (k == "logits" and args.get("inplace_backward"))}  # documented
        before = _snapshot(inputs)
        try:
            out = OPS[probe["op"]](args, backend)
        except Exception as error:  # noqa: BLE001  (judged by the parent)
            results[backend] = ("raise", type(error).__name__, str(error)[:400])
            continue
        try:
            violations = CHECKS.get(probe["op"], _no_check)(args, out)
        except Exception as error:  # noqa: BLE001  (outputs the check cannot even read)
            violations = [f"contract check failed on the outputs: {type(error).__name__}: {error}"]
        if _snapshot(inputs) != before:
            violations.append("an input was modified")
        results[backend] = ("ok", _digest(out), violations)
    return results


_IMAGE_OPS = ("block_mask", "random_patch_mask", "simmim_mask", "tube_mask")


def _on_gpu(op, args):
    """With a GPU, Triton gets CUDA tensors (and the image ops device="cuda"); meta stays meta."""
    def move(value):
        if isinstance(value, torch.Tensor):
            return value if value.device.type == "meta" else value.cuda()
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    args = move(args)
    if op in _IMAGE_OPS and args.get("device") in (None, "cpu"):
        args["device"] = "cuda"
    return args


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def _snapshot(args):
    return [_hash(t) for t in _tensors(args)]


def _hash(t):
    if t.device.type == "meta":
        return ("meta", tuple(t.shape), str(t.dtype))
    data = t.detach().cpu().contiguous()
    if data.dtype == torch.bfloat16:
        data = data.view(torch.int16)
    return (tuple(t.shape), str(t.dtype), hashlib.sha1(data.numpy().tobytes()).hexdigest())


def _digest(out):
    """Outputs as comparable data: integers and bools exactly, floats rounded (compared with a
    tolerance by the parent), meta outputs by shape."""
    digest = []
    for t in _tensors(out if isinstance(out, (tuple, list, dict)) else (out,)):
        if t.device.type == "meta" or t.dtype.is_floating_point:
            values = None
            if t.device.type != "meta" and t.numel() <= 4096:
                values = t.detach().double().cpu().reshape(-1).tolist()
            digest.append(("float" if t.device.type != "meta" else "meta", tuple(t.shape), str(t.dtype), values))
        else:
            digest.append(("exact",) + _hash(t))
    return digest


def _no_check(args, out):
    return []


# --- the ops, called from a probe's arguments ------------------------------------------------------------


def _op(name):
    def call(args, backend):
        import fastmask

        return getattr(fastmask, name)(**args, backend=backend)

    return call


def _backendless(name):
    def call(args, backend):
        import fastmask

        return getattr(fastmask, name)(**args)

    return call


def _collate(args, backend):
    from fastmask import collators

    args = dict(args)  # the probe's own arguments stay as built (they are checked for modification)
    kind = args.pop("collator")
    features = args.pop("features")
    if kind == "mlm":
        made = collators.MLMCollator(Tokenizer(), backend=backend, **args)
    elif kind == "t5":
        made = collators.T5SpanCorruptionCollator(Tokenizer(), backend=backend, **args)
    else:
        made = collators.ImageMaskCollator(kind, backend=backend, **args)
    return made(features, keys=list(range(len(features))) if isinstance(features, list) else None)


def _device_masker(args, backend):
    from fastmask import collators

    config = {"mlm": lambda: collators.MLMCollator(Tokenizer(), seed=1, backend=backend),
              "t5": lambda: collators.T5SpanCorruptionCollator(Tokenizer(), seed=1, backend=backend),
              "block": lambda: collators.ImageMaskCollator("block", seed=1, backend=backend)}[args["config"]]()
    return collators.DeviceMasker(config)(args["batch"])


def _sample_keys(args, backend):
    from fastmask.collators import sample_keys

    return sample_keys(**args)


class Tokenizer:
    """The tokenizer attributes the collators read: a VOCAB-token vocabulary."""

    mask_token, mask_token_id, pad_token_id, eos_token_id = "[MASK]", 4, 0, 1
    all_special_ids = [0, 1, 4]
    padding_side, model_max_length = "right", 512

    def __len__(self):
        return VOCAB


OPS = {name: _op(name) for name in ("random_words", "mask_tokens", "mask_spans", "t5_span_corruption", "ul2_denoise",
                                     "block_mask", "random_patch_mask", "simmim_mask", "tube_mask",
                                     "masked_cross_entropy", "masked_lm_loss", "permutation_lm", "attention_mask",
                                     "magnitude_masks", "mask_edges", "mask_paths", "mask_features",
                                     "masked_distillation_loss")}
OPS.update({name: _backendless(name) for name in ("gather_kept", "restore", "t5_lengths", "t5_output_lengths")})
OPS.update(collate=_collate, device_masker=_device_masker, sample_keys=_sample_keys)


# --- contracts (in the child, on the outputs of a call that returned) -------------------------------------


def _rows(t):
    return t.unsqueeze(0) if t.dim() == 1 else t


def _check_random_words(args, out):
    keys = args["keys"]
    rows = len(keys)
    bad = []
    if tuple(out.shape) != (rows, args["length"], 4) or out.dtype != torch.int64:
        bad.append(f"shape {tuple(out.shape)} {out.dtype}")
    elif out.device.type != "meta" and out.numel() and not bool(((out >= 0) & (out < 1 << 32)).all()):
        bad.append("a word outside [0, 2^32)")
    return bad


def _check_masked(args, out):
    """mask_tokens / mask_spans: copied or replaced ids, labels the originals where chosen."""
    ids = args["input_ids"]
    views = args.get("views", 1)
    bad = []
    got_ids, labels = _rows(out.input_ids), _rows(out.labels)
    rows, length = _rows(ids).shape[0] * views, _rows(ids).shape[1]
    if tuple(got_ids.shape) != (rows, length) or got_ids.shape != labels.shape or got_ids.dtype != ids.dtype:
        return [f"shapes {tuple(got_ids.shape)} {tuple(labels.shape)} for {rows} rows of {length}"]
    if ids.device.type == "meta":
        return [] if got_ids.device.type == "meta" else ["meta input, non-meta output"]
    original = _rows(ids).repeat_interleave(views, 0)
    chosen = labels != args.get("ignore_index", -100)
    if not torch.equal(labels[chosen], original[chosen]):
        bad.append("a label differs from the original id")
    # Predictions beyond max_predictions lose their labels but keep their corruption (docs/masking.md).
    if args.get("prediction_probability") is None and args.get("max_predictions") is None \
            and not torch.equal(got_ids[~chosen], original[~chosen]):
        bad.append("an unchosen id changed")
    vocab = args.get("vocab_size")
    if vocab is not None and got_ids.numel() and not bool(((got_ids >= 0) & (got_ids < vocab)).all()):
        bad.append("an output id outside the vocabulary")
    if out.positions is not None:
        positions = _rows(out.positions)
        if positions.shape != (rows, args["max_predictions"]) or not bool(((positions >= -1) & (positions < length)).all()):
            bad.append(f"positions {tuple(positions.shape)} outside [-1, {length})")
    return bad


def _check_t5(args, out):
    import fastmask

    inputs, targets = (_rows(t) for t in out[:2])
    ids = _rows(args["input_ids"])
    bad = []
    if args.get("denoisers") is None:
        expected = fastmask.t5_output_lengths(ids.shape[1], args.get("noise_density", 0.15),
                                              args.get("mean_noise_span_length", 3.0))
        if (inputs.shape[1], targets.shape[1]) != expected:
            bad.append(f"widths {(inputs.shape[1], targets.shape[1])}, expected {expected}")
    if inputs.shape[0] != ids.shape[0] or targets.shape[0] != ids.shape[0] or inputs.dtype != ids.dtype:
        bad.append("rows or dtype")
    if ids.device.type == "meta" or not inputs.numel():
        return bad
    vocab = args.get("vocab_size")
    if vocab is not None and not all(bool(((t >= 0) & (t < vocab)).all()) for t in (inputs, targets)):
        bad.append("an output id outside the vocabulary")
    if args.get("denoisers") is None and not bool((inputs[:, -1] == args["eos_token_id"]).all()):
        bad.append("inputs do not end with eos")
    return bad


def _check_patch(args, out):
    mask, keep, restore = out
    batch, patches = args["batch"], args["num_patches"]
    if mask.shape != (batch, patches) or restore.shape != (batch, patches) or keep.shape[0] != batch:
        return [f"shapes {tuple(mask.shape)} {tuple(keep.shape)} {tuple(restore.shape)}"]
    if mask.device.type == "meta" or batch == 0:
        return []
    bad = []
    if not bool((mask.sum(1) == patches - keep.shape[1]).all()):
        bad.append("masked count differs from L - L_keep")
    if not torch.equal(restore.sort(1).values, torch.arange(patches, device=restore.device).expand(batch, patches)):
        bad.append("ids_restore is not a permutation")
    if bool(mask.gather(1, keep).any()):
        bad.append("a kept patch is masked")
    return bad


def _check_block(args, out):
    height = args.get("height", 14)
    width = args.get("width") or height
    if out.shape != (args["batch"], height, width) or out.dtype != torch.bool:
        return [f"shape {tuple(out.shape)} {out.dtype}"]
    if out.device.type != "meta" and args.get("exact") and out.numel():
        target = args.get("num_masking_patches", 75)
        if not bool((out.reshape(out.shape[0], -1).sum(1) == target).all()):
            return ["exact=True without exactly num_masking_patches masked"]
    return []


def _check_loss(args, out):
    loss = out[0] if isinstance(out, tuple) else out
    return [] if isinstance(loss, torch.Tensor) else [f"loss is a {type(loss).__name__}"]


CHECKS = {"random_words": _check_random_words, "mask_tokens": _check_masked, "mask_spans": _check_masked,
          "t5_span_corruption": _check_t5, "ul2_denoise": _check_t5, "random_patch_mask": _check_patch,
          "block_mask": _check_block, "masked_cross_entropy": _check_loss, "masked_lm_loss": _check_loss}


# --- the parent: a worker per module, restarted after a crash or a hang ----------------------------------------


class Runner:
    def __init__(self):
        self.context = multiprocessing.get_context("spawn")
        self.process = None
        self.probes = 0
        self.outcomes = {"ok": 0, "raise": 0}
        self.per_op = {}

    def _start(self):
        self.conn, child = self.context.Pipe()
        self.process = self.context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def stop(self):
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.process = None

    def run(self, probe):
        if self.process is None or not self.process.is_alive():
            self._start()
        self.probes += 1
        self.conn.send(probe)
        if not self.conn.poll(TIMEOUT_S):
            self.stop()
            return "hang"
        try:
            results = self.conn.recv()
        except EOFError:
            self.process.join()
            code = self.process.exitcode
            self.process = None
            return f"crash (exit code {code})"
        for result in results.values():
            self.outcomes[result[0]] += 1
            self.per_op.setdefault(probe["op"], {"ok": 0, "raise": 0})[result[0]] += 1
        return results


@pytest.fixture(scope="module")
def runner():
    made = Runner()
    yield made
    made.stop()
    print(f"\nfuzz: {made.probes} probes, outcomes per backend call {made.outcomes}; per op {made.per_op}")


# What an error may start with: public parameters (and a few names of their parts), before ": ".
_PARTS = {"features", "batch", "sequence length", "denoisers: S noise_density", "denoisers: noise_density",
          "denoisers: mean_noise_span_length", "height", "width", "x", "device", "keys", "index", "indices"}


def _named(message):
    import inspect

    import fastmask
    from fastmask import collators

    names = set(_PARTS)
    for fn in [getattr(fastmask, n) for n in fastmask.__all__] + [collators.sample_keys, collators.MLMCollator,
                                                                    collators.T5SpanCorruptionCollator, collators.ImageMaskCollator]:
        if callable(fn):
            try:
                names |= set(inspect.signature(fn).parameters)
            except (TypeError, ValueError):
                pass
    head = message.split(": ")[0] if ": " in message else ""
    # an element of a sequence argument is named by index: tensors[1]
    return bool(head) and all(re.sub(r"\[\d+\]$", "", part) in names for part in re.split(r", | \+ | \* | / | or ", head))


def judge(results, probe, *, agree=True, allowed_errors=(ValueError.__name__, TypeError.__name__)):
    """Fail on a crash, a hang, an unnamed or unexpected error, a broken contract, or (agree=True)
    backends that disagree."""
    where = f"probe {probe!r}"
    assert not isinstance(results, str), f"{results} on {where}"
    if VERBOSE:
        print(f"\n{where}\n  -> " + "\n  -> ".join(f"{b}: {r[:3] if r[0] == 'raise' else ('ok', r[2])}" for b, r in results.items()))
    for backend, result in results.items():
        if result[0] == "raise":
            _, kind, message = result
            assert kind in allowed_errors, f"{backend}: {kind}: {message} on {where}"
            assert _named(message), f"{backend}: error names no argument: {message!r} on {where}"
        else:
            assert not result[2], f"{backend}: contract broken: {result[2]} on {where}"
    if not agree:
        return
    kinds = {backend: r[0] for backend, r in results.items()}
    assert len(set(kinds.values())) == 1, f"backends disagree on raising: {results} on {where}"
    if next(iter(kinds.values())) == "raise":
        names = {r[2].split(":")[0] for r in results.values()}
        assert len(names) == 1, f"backends name different arguments: {results} on {where}"
        return
    digests = [r[1] for r in results.values()]
    for other in digests[1:]:
        _same(digests[0], other, where)


def _same(a, b, where):
    assert len(a) == len(b), f"output counts {len(a)} != {len(b)} on {where}"
    for x, y in zip(a, b):
        assert x[:3] == y[:3], f"outputs differ: {x[:3]} != {y[:3]} on {where}"
        if x[0] == "exact":
            assert x[3] == y[3], f"outputs differ on {where}"
        elif x[0] == "float" and x[3] is not None and y[3] is not None:
            for u, v in zip(x[3], y[3]):
                assert (math.isnan(u) and math.isnan(v)) or u == v or abs(u - v) <= 2e-2 * (1 + abs(v)), (
                    f"float outputs differ: {u} != {v} on {where}")


# --- strategies -------------------------------------------------------------------------------------------------

HUGE = (2**31 - 1, 2**31, 2**40, 2**63, 2**64)
ODD_INTS = st.sampled_from((-1, 0, 1, 2, 3, 7, 100, *HUGE, -(2**63)))
BAD_SCALARS = st.sampled_from((1.5, float("nan"), float("inf"), "3", None, True, [1]))
SEEDS = st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from((2**64, -(2**63) - 1, 1.5, "1", True)),
                  st.just(("tensor", (), "int64", 0, 1000, "contiguous", 0, ())),
                  st.just(("tensor", (2,), "int64", 0, 10, "contiguous", 0, ())),
                  st.just(("tensor", (), "int32", 0, 10, "contiguous", 0, ())))
ID_DTYPES = st.sampled_from(("int64", "int64", "int32", "int16", "float32", "bool", "uint8"))


RATES = st.sampled_from((0, 0, 0, 8, 3))  # per probe: how often an argument is odd (0: a valid probe)


def odd(draw, rate) -> bool:
    return rate > 0 and draw(st.integers(0, rate - 1)) == 0


def _maybe(draw, value, odd_values, rate):
    return draw(odd_values) if odd(draw, rate) else value


@st.composite
def ids_specs(draw, rate, min_length=0, max_length=48, low=0, high=VOCAB):
    """input_ids [B, L] (or [L]) in every layout; with `rate`, odd ranks, dtypes and values."""
    rank = draw(st.sampled_from((0, 3))) if odd(draw, rate) else draw(st.sampled_from((2, 2, 2, 1)))
    batch = draw(st.integers(0, 3))
    length = draw(st.integers(min_length, max_length))
    shape = {0: (), 1: (length,), 2: (batch, length), 3: (batch, length, 2)}[rank]
    dtype = draw(ID_DTYPES) if odd(draw, rate) else draw(st.sampled_from(("int64", "int64", "int32")))
    layout = draw(st.sampled_from(LAYOUTS)) if draw(st.booleans()) else "contiguous"
    specials = draw(st.lists(st.sampled_from((-1, high, high + 7, 2**31, 2**40, -(2**63))), min_size=1, max_size=2)) \
        if odd(draw, rate) else []
    return tensor_spec(shape, dtype, low, high, layout, draw(st.integers(0, 1000)), specials)


def keys_for(draw, batch, rate):
    if odd(draw, rate):
        return draw(st.sampled_from(([1.7, 2.2], [2**63], ["a"], "ab", [True], list(range(batch + 1)),
                                     tensor_spec((batch,), "float32"), tensor_spec((batch,), "int64", layout="meta"),
                                     tensor_spec((batch, 1), "int64"))))
    choice = draw(st.integers(0, 4))
    if choice < 2:
        return None
    if choice == 2:
        return draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=batch, max_size=batch))
    return tensor_spec((batch,), draw(st.sampled_from(("int64", "int32"))), -(2**31), 2**31 - 1,
                       draw(st.sampled_from(("contiguous", "sliced", "expanded"))), draw(st.integers(0, 99)))


def seed_for(draw, rate):
    return draw(SEEDS) if odd(draw, rate) else draw(st.integers(-(2**63), 2**64 - 1))


def _batch_of(spec):
    return spec[1][0] if isinstance(spec, tuple) and spec[0] == "tensor" and len(spec[1]) >= 2 else 1


def probe(op, args, backends=BACKENDS):
    return {"op": op, "args": args, "backends": backends}


ODD_VALUES = st.one_of(ODD_INTS, BAD_SCALARS)
ODD_PROBABILITIES = st.sampled_from((-0.5, 1.5, float("nan"), "0.5", None))


# --- the tests: one per family ----------------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_fuzz_random_words(runner, data):
    draw = data.draw
    rate = draw(RATES)
    rows = draw(st.integers(0, 4))
    keys = keys_for(draw, rows, rate)
    if keys is None:
        keys = list(range(rows))
    args = dict(seed=seed_for(draw, rate), keys=keys, length=_maybe(draw, draw(st.integers(0, 40)), ODD_VALUES, rate),
                purpose=_maybe(draw, draw(st.integers(0, 8)), st.sampled_from((-1, 2**32, 2**32 - 1, 1.0)), rate))
    if args["length"] in HUGE:
        args["keys"] = list(range(64))  # 64 rows x 2^31 positions: over 1 TiB, refused before allocating
    judge(runner.run(probe("random_words", args)), args)


@st.composite
def masking_args(draw, spans=False):
    rate = draw(RATES)
    ids = draw(ids_specs(rate))
    shape = ids[1]
    batch = _batch_of(ids)
    args = dict(input_ids=ids, seed=seed_for(draw, rate), mask_token_id=_maybe(draw, 4, ODD_INTS, rate),
                keys=keys_for(draw, batch, rate))
    if draw(st.integers(0, 3)):
        args["vocab_size"] = _maybe(draw, VOCAB, ODD_VALUES, rate)
    for name in ("mlm_probability", "mask_replace_prob", "random_replace_prob"):
        if draw(st.integers(0, 3)) == 0:
            args[name] = _maybe(draw, draw(st.sampled_from((0.0, 0.1, 0.15, 0.5, 1.0))), ODD_PROBABILITIES, rate)
    mask_p, random_p = args.get("mask_replace_prob", 0.8), args.get("random_replace_prob", 0.1)
    if isinstance(mask_p, float) and isinstance(random_p, float) and mask_p + random_p > 1:
        args["random_replace_prob"] = 0.0
    if draw(st.integers(0, 3)) == 0:
        args["max_predictions"] = _maybe(draw, draw(st.integers(1, 64)), ODD_INTS, rate)
        if args["max_predictions"] in HUGE:
            args["input_ids"] = tensor_spec((64, 4))  # 64 rows x 2^31 positions: over 1 TiB, refused before allocating
    if draw(st.integers(0, 4)) == 0:
        args["special_ids"] = draw(st.sampled_from(([-1], [VOCAB], [2**40], [1.5], "ab"))) if odd(draw, rate) else [0, 1]
    if draw(st.integers(0, 4)) == 0:
        args["attention_mask"] = tensor_spec(shape, draw(st.sampled_from(("int64", "bool", "uint8"))), 0, 2,
                                             draw(st.sampled_from(("contiguous", "expanded", "sliced"))))
        if odd(draw, rate):
            args["attention_mask"] = draw(st.sampled_from((tensor_spec(shape, "float32"), tensor_spec(shape, "bool", layout="meta"),
                                                           tensor_spec(shape + (1,), "bool"))))
    if draw(st.integers(0, 4)) == 0:
        args["word_ids"] = tensor_spec(shape, "int64", -1, 8, draw(st.sampled_from(("contiguous", "sliced", "expanded"))))
    elif draw(st.integers(0, 6)) == 0:
        args["word_table"] = tensor_spec((VOCAB - odd(draw, rate),), "bool", 0, 2)
    if odd(draw, rate):
        args["ignore_index"] = draw(ODD_INTS)
    if not spans:
        if draw(st.integers(0, 4)) == 0:
            args["views"] = _maybe(draw, 2, st.sampled_from((0, -1, 2**16, 1.0)), rate)
        if draw(st.integers(0, 4)) == 0:
            args["exact"] = _maybe(draw, True, st.sampled_from((1, "yes")), rate)
        if draw(st.integers(0, 5)) == 0:
            args["prediction_probability"] = _maybe(draw, 0.3, ODD_PROBABILITIES, rate)
        if draw(st.integers(0, 5)) == 0:
            args["validate"] = True
    else:
        if draw(st.integers(0, 4)) == 0:
            args["span_lengths"] = _maybe(draw, [0.5, 0.5], st.sampled_from(([], [-1.0, 2.0], [float("nan")], "ab")), rate)
        if draw(st.integers(0, 4)) == 0:
            args["geometric_p"] = _maybe(draw, 0.5, st.sampled_from((0.0, -1.0, float("nan"))), rate)
        if draw(st.integers(0, 4)) == 0:
            args["max_span_length"] = _maybe(draw, draw(st.sampled_from((1, 40))), st.sampled_from((0, -1, 2**31)), rate)
    return args


@FUZZ
@given(st.data())
def test_fuzz_mask_tokens(runner, data):
    args = data.draw(masking_args())
    judge(runner.run(probe("mask_tokens", args)), args)


@FUZZ
@given(st.data())
def test_fuzz_mask_spans(runner, data):
    args = data.draw(masking_args(spans=True))
    judge(runner.run(probe("mask_spans", args)), args)


SENTINELS = list(range(VOCAB - 1, VOCAB - 40, -1))


@FUZZ
@given(st.data())
def test_fuzz_t5_and_ul2(runner, data):
    draw = data.draw
    rate = draw(RATES)
    ids = draw(ids_specs(rate, min_length=8, max_length=64, low=5, high=VOCAB - 40))
    args = dict(input_ids=ids, seed=seed_for(draw, rate), eos_token_id=_maybe(draw, 1, ODD_VALUES, rate),
                keys=keys_for(draw, _batch_of(ids), rate), vocab_size=_maybe(draw, VOCAB, ODD_VALUES, rate))
    if draw(st.integers(0, 3)) == 0:
        args["sentinel_ids"] = _maybe(draw, SENTINELS, st.sampled_from(([-5] * 40, [105] * 40, [2**40] * 40, [], [1.5] * 40, "ab")), rate)
        if odd(draw, rate):
            args["vocab_size"] = None
    if draw(st.booleans()):
        op = "ul2_denoise"
        args["denoisers"] = _maybe(draw, draw(st.sampled_from((((3.0, 0.15), ("S", 0.25)), ((8.0, 0.5),), (("S", 0.5),)))),
                                   st.sampled_from(((), ((0.5, 0.15),), (("S", 1.5),), "R", ((3, 0.15, 1),))), rate)
        if draw(st.integers(0, 3)) == 0:
            args["pad_token_id"] = _maybe(draw, 0, ODD_INTS, rate)
        if odd(draw, rate):
            args["weights"] = draw(st.sampled_from(([0.0], [-1.0], [float("nan")], [1, 2, 3])))
    else:
        op = "t5_span_corruption"
        args["noise_density"] = _maybe(draw, draw(st.sampled_from((0.15, 0.3, 0.5))), st.sampled_from((0.0, 1.0, float("nan"), -1.0)), rate)
        args["mean_noise_span_length"] = _maybe(draw, draw(st.sampled_from((1.0, 3.0, 8.0))),
                                                st.sampled_from((0.5, float("inf"), float("nan"))), rate)
    if draw(st.integers(0, 4)) == 0:
        args["validate"] = True
    judge(runner.run(probe(op, args)), args)


@FUZZ
@given(st.data())
def test_fuzz_t5_lengths(runner, data):
    draw = data.draw
    rate = draw(RATES)
    args = dict(noise_density=_maybe(draw, draw(st.sampled_from((0.15, 0.5, 0.3, 0.8))), st.sampled_from((0.0, float("nan"))), rate),
                mean_noise_span_length=_maybe(draw, draw(st.sampled_from((3.0, 1.0, 64.0))), st.just(0.5), rate))
    op = draw(st.sampled_from(("t5_lengths", "t5_output_lengths")))
    size = _maybe(draw, draw(st.one_of(st.integers(1, 5000), st.sampled_from((2**31 - 1, 10**9)))), st.one_of(ODD_INTS, BAD_SCALARS), rate)
    args["inputs_length" if op == "t5_lengths" else "length"] = size
    judge(runner.run(probe(op, args, backends=("-",))), args)


@FUZZ
@given(st.data())
def test_fuzz_image(runner, data):
    draw = data.draw
    rate = draw(RATES)
    op = draw(st.sampled_from(("block_mask", "random_patch_mask", "simmim_mask", "tube_mask")))
    batch = _maybe(draw, draw(st.integers(0, 3)), ODD_VALUES, rate)
    args = dict(batch=batch, seed=seed_for(draw, rate))
    if draw(st.integers(0, 3)) == 0:
        args["device"] = _maybe(draw, draw(st.sampled_from(("meta", "cpu", None))), st.sampled_from(("cuda", "tpu", 3)), rate)
        if args["device"] == "cuda" and torch.cuda.is_available():
            args["device"] = "tpu"
    if isinstance(batch, int) and 0 <= batch < 8 and draw(st.integers(0, 2)) == 0:
        args["keys"] = keys_for(draw, batch, rate)
    if op == "block_mask":
        args["height"] = _maybe(draw, draw(st.integers(2, 16)), st.one_of(ODD_INTS, st.just(30000)), rate)
        if args["height"] == 30000:
            args["batch"] = 0  # a 0.9 GB mask per row would only load the shared machine
        args["num_masking_patches"] = _maybe(draw, draw(st.integers(0, 3)), st.one_of(ODD_INTS, st.just(10**8)), rate)
        for name, valid, odd_values in (("min_num_patches", (1, 2, 4), (1e9, 0, -1.0, float("nan"))),
                                        ("min_aspect", (0.3, 0.5, 1.0), (1e-300, 0.0, 5.0, 1e300)),
                                        ("max_attempts", (1, 10), (0, 2**20, 1.5)), ("exact", (True, False), (1,)),
                                        ("max_num_patches", (1, 100), (0, 2**40))):
            if draw(st.integers(0, 3)) == 0:
                args[name] = _maybe(draw, draw(st.sampled_from(valid)), st.sampled_from(odd_values), rate)
    elif op == "random_patch_mask":
        args["num_patches"] = _maybe(draw, draw(st.integers(1, 64)), ODD_VALUES, rate)
        args["mask_ratio"] = _maybe(draw, draw(st.sampled_from((0.0, 0.5, 0.75, 0.9))), st.sampled_from((1.0, -0.1, float("nan"), 0.999)), rate)
    elif op == "simmim_mask":
        args.update(input_size=_maybe(draw, draw(st.sampled_from((64, (64, 32)))), st.sampled_from((0, 65, (64,), 2**31)), rate),
                    mask_patch_size=_maybe(draw, draw(st.sampled_from((32, 16))), st.sampled_from((0, 7)), rate),
                    model_patch_size=_maybe(draw, draw(st.sampled_from((4, 8))), st.sampled_from((0, 3)), rate))
    else:
        args.update(frames=_maybe(draw, draw(st.sampled_from((1, 2))), st.sampled_from((0, 2**31)), rate),
                    height=_maybe(draw, 4, st.sampled_from((0, 2**20)), rate),
                    width=_maybe(draw, draw(st.sampled_from((4, 3))), st.sampled_from((0, 2**20)), rate),
                    mask_ratio=_maybe(draw, draw(st.sampled_from((0.9, 0.5))), st.sampled_from((1.0, float("nan"))), rate))
    judge(runner.run(probe(op, args)), args)


@FUZZ
@given(st.data())
def test_fuzz_gather_kept_and_restore(runner, data):
    draw = data.draw
    rate = draw(RATES)
    batch, length, dim = draw(st.integers(0, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 4))
    kept = _maybe(draw, draw(st.integers(0, length)), st.just(length + 1), rate)
    index_high = _maybe(draw, length, st.sampled_from((length + 3, 2**40)), rate)
    index_layout = _maybe(draw, draw(st.sampled_from(("contiguous", "expanded", "sliced"))), st.just("meta"), rate)
    index_dtype = _maybe(draw, "int64", st.sampled_from(("int32", "float32")), rate)
    if draw(st.booleans()):
        args = dict(x=tensor_spec((batch, length, dim), "float32", layout=draw(st.sampled_from(LAYOUTS))),
                    ids_keep=tensor_spec((_maybe(draw, batch, st.just(batch + 1), rate), kept), index_dtype, 0, index_high,
                                         index_layout))
        op = "gather_kept"
    else:
        token = _maybe(draw, draw(st.sampled_from((tensor_spec((dim,), "float32"), tensor_spec((1, 1, dim), "float32")))),
                       st.sampled_from((tensor_spec((dim + 1,), "float32"), 1.0, None, tensor_spec((dim,), "float32", layout="meta"))),
                       rate)
        args = dict(x_kept=tensor_spec((batch, kept, dim), "float32"), mask_token=token,
                    ids_restore=tensor_spec((batch, length), index_dtype, 0, index_high, index_layout))
        op = "restore"
    judge(runner.run(probe(op, args, backends=("-",))), args)


FLOATS = ("float32", "float32", "bfloat16", "float16", "float64")


@FUZZ
@given(st.data())
def test_fuzz_cross_entropy(runner, data):
    """The CE ops: no crash or hang, named errors, shapes, and backends that agree (non-finite logits
    give NaN as torch, fp64 everywhere, inplace_backward refuses rows that share memory)."""
    draw = data.draw
    rate = draw(RATES)
    rows, vocab = draw(st.integers(0, 6)), _maybe(draw, draw(st.sampled_from((1, 7, 33))), st.just(0), rate)
    specials = draw(st.lists(st.sampled_from((float("inf"), float("-inf"), float("nan"), 1e30)), max_size=2)) if odd(draw, rate) else []
    logits = tensor_spec((rows, vocab), draw(st.sampled_from(FLOATS)), 0, 10,
                         draw(st.sampled_from(("contiguous", "transposed", "sliced", "expanded", "overlap", "meta"))),
                         draw(st.integers(0, 99)), specials)
    labels = tensor_spec((_maybe(draw, rows, st.just(rows + 1), rate),), _maybe(draw, "int64", st.sampled_from(("int32", "float32")), rate),
                         _maybe(draw, 0, st.sampled_from((-100, -1)), rate), max(vocab, 1) + _maybe(draw, 0, st.just(3), rate),
                         "meta" if logits[5] == "meta" else "contiguous")
    if draw(st.booleans()):
        args = dict(logits=logits, labels=labels,
                    reduction=_maybe(draw, draw(st.sampled_from(("mean", "sum", "none"))), st.just("avg"), rate),
                    label_smoothing=_maybe(draw, draw(st.sampled_from((0.0, 0.1))), st.sampled_from((1.0, -0.1, float("nan"))), rate),
                    z_loss=_maybe(draw, draw(st.sampled_from((0.0, 1e-4))), st.just(-1.0), rate),
                    softcap=_maybe(draw, draw(st.sampled_from((None, 30.0))), st.just(0.0), rate),
                    inplace_backward=draw(st.booleans()))
        op = "masked_cross_entropy"
    else:
        dim = draw(st.integers(1, 8))
        hidden = tensor_spec((rows, dim), draw(st.sampled_from(FLOATS)), 0, 10, draw(st.sampled_from(("contiguous", "sliced", "meta"))))
        weight = tensor_spec((vocab, _maybe(draw, dim, st.just(dim + 1), rate)), hidden[2], 0, 10,
                             "meta" if hidden[5] == "meta" else "contiguous")
        labels = labels[:5] + ("meta" if hidden[5] == "meta" else "contiguous",) + labels[6:]
        args = dict(hidden=hidden, weight=weight, labels=labels, reduction=draw(st.sampled_from(("mean", "sum", "none"))))
        if draw(st.integers(0, 3)) == 0:
            args["max_rows"] = _maybe(draw, draw(st.sampled_from((1, 4))), st.sampled_from((0, 2**31)), rate)
        op = "masked_lm_loss"
    judge(runner.run(probe(op, args)), args)


@FUZZ
@given(st.data())
def test_fuzz_newer_ops(runner, data):
    """permutation_lm, attention_mask, magnitude_masks, the graph masks and the distillation loss: no
    crash or hang, named errors, backends that agree."""
    draw = data.draw
    rate = draw(RATES)
    kind = draw(st.sampled_from(("permutation", "attention", "pruning", "edges", "paths", "features", "distillation")))
    rows = draw(st.integers(0, 3))
    if kind == "permutation":
        length = _maybe(draw, 2 * draw(st.integers(0, 12)), st.sampled_from((1, 7)), rate)
        args = dict(input_ids=tensor_spec((rows, length), draw(st.sampled_from(("int64", "int32"))), 5, VOCAB,
                                _maybe(draw, "contiguous", st.sampled_from(("transposed", "meta")), rate)),
                    mask_token_id=_maybe(draw, 4, ODD_VALUES, rate), seed=seed_for(draw, rate),
                    plm_probability=_maybe(draw, draw(st.sampled_from((1 / 6, 0.5))), ODD_PROBABILITIES, rate),
                    max_span_length=_maybe(draw, draw(st.integers(1, 5)), st.sampled_from((0, -1, 2**40)), rate))
        op = "permutation_lm"
    elif kind == "attention":
        length = draw(st.integers(1, 40))
        segments = tensor_spec((max(rows, 1), length), "int64", 0, 3, _maybe(draw, "contiguous", st.just("meta"), rate))
        args = dict(segment_ids=segments, kind=draw(st.sampled_from(("document_causal", "document_bidirectional"))),
                    window=_maybe(draw, draw(st.sampled_from((None, 4))), st.sampled_from((0, -1, 1.5)), rate),
                    format=_maybe(draw, draw(st.sampled_from(("bool", "additive"))), st.just("dense"), rate),
                    block_size=_maybe(draw, 16, st.sampled_from((0, -1)), rate))
        op = "attention_mask"
    elif kind == "pruning":
        shapes = draw(st.lists(st.sampled_from(((4, 8), (16,), (2, 3, 4))), min_size=1, max_size=3))
        floats = draw(st.lists(st.sampled_from((float("nan"), float("inf"), 0.0)), max_size=2)) if odd(draw, rate) else []
        args = dict(tensors=[tensor_spec(shape, draw(st.sampled_from(FLOATS)), -5, 5, "contiguous", i, floats)
                             for i, shape in enumerate(shapes)],
                    sparsity=_maybe(draw, draw(st.sampled_from((0.0, 0.5, 0.9, 1.0))), ODD_PROBABILITIES, rate),
                    scope=_maybe(draw, draw(st.sampled_from(("global", "layer"))), st.just("all"), rate))
        op = "magnitude_masks"
    elif kind in ("edges", "paths"):
        nodes = draw(st.integers(1, 12))
        edges = tensor_spec((_maybe(draw, 2, st.just(3), rate), draw(st.integers(0, 30))), "int64", 0,
                            nodes + _maybe(draw, 0, st.just(5), rate),
                            _maybe(draw, "contiguous", st.sampled_from(("transposed", "meta")), rate))
        if kind == "edges":
            args = dict(edge_index=edges, p=_maybe(draw, draw(st.sampled_from((0.0, 0.3, 1.0))), ODD_PROBABILITIES, rate),
                        undirected=draw(st.booleans()), num_nodes=nodes, seed=seed_for(draw, rate))
            op = "mask_edges"
        else:
            args = dict(edge_index=edges, num_nodes=_maybe(draw, nodes, ODD_VALUES, rate),
                        root_p=_maybe(draw, 0.5, ODD_PROBABILITIES, rate),
                        walk_length=_maybe(draw, draw(st.integers(1, 4)), st.sampled_from((0, -1, 2**40)), rate),
                        seed=seed_for(draw, rate))
            op = "mask_paths"
    elif kind == "features":
        args = dict(x=tensor_spec((rows, draw(st.integers(0, 9))), draw(st.sampled_from(FLOATS)), 0, 5,
                                  _maybe(draw, "contiguous", st.sampled_from(("transposed", "meta")), rate)),
                    p=_maybe(draw, draw(st.sampled_from((0.0, 0.5, 1.0))), ODD_PROBABILITIES, rate),
                    mode=_maybe(draw, draw(st.sampled_from(("col", "row", "all"))), st.just("cols"), rate),
                    seed=seed_for(draw, rate))
        op = "mask_features"
    else:
        dim, vocab = draw(st.integers(1, 8)), draw(st.sampled_from((1, 7, 33)))
        dtype = draw(st.sampled_from(("float32", "float64", "bfloat16")))
        layout = _maybe(draw, "contiguous", st.just("meta"), rate)
        args = dict(student_hidden=tensor_spec((rows, dim), dtype, -2, 2, layout, 1),
                    student_weight=tensor_spec((vocab, dim), dtype, -2, 2, layout, 2),
                    teacher_hidden=tensor_spec((rows, _maybe(draw, dim, st.just(dim + 1), rate)), dtype, -2, 2, layout, 3),
                    teacher_weight=tensor_spec((vocab, dim), dtype, -2, 2, layout, 4),
                    labels=tensor_spec((rows,), "int64", _maybe(draw, 0, st.just(-100), rate), vocab + _maybe(draw, 0, st.just(2), rate),
                                       layout),
                    temperature=_maybe(draw, draw(st.sampled_from((1.0, 2.0))), st.sampled_from((0.0, -1.0, float("nan"))), rate),
                    divergence=_maybe(draw, draw(st.sampled_from(("kl", "reverse_kl", "jsd"))), st.just("js"), rate),
                    hard_weight=draw(st.sampled_from((0.0, 0.5))),
                    reduction=draw(st.sampled_from(("mean", "sum", "none"))))
        op = "masked_distillation_loss"
    judge(runner.run(probe(op, args)), args)


@FUZZ
@given(st.data())
def test_fuzz_collators(runner, data):
    draw = data.draw
    rate = draw(RATES)
    kind = draw(st.sampled_from(("mlm", "t5", "block", "mae", "sample_keys", "device_masker")))
    if kind == "sample_keys":
        args = dict(indices=draw(st.sampled_from(([1, 2], [1.7, 2.2], [2**63], [-1], [2**40], ["a"], [], [[1]],
                                                  ("tensor", (2,), "float32", 0, 5, "contiguous", 0, ())))),
                    epoch=draw(st.sampled_from((0, 1, -1, 2**23, 1.5))))
        judge(runner.run(probe("sample_keys", args, backends=("-",))), args)
        return
    if kind == "device_masker":
        config = draw(st.sampled_from(("mlm", "t5", "block")))
        layout = draw(st.sampled_from(("contiguous", "meta")))
        batch = {"input_ids": tensor_spec((2, 24), "int64", 5, 60, layout),
                 "pixel_values": tensor_spec((2, 3, 4, 4), "float32", layout=layout),
                 "sample_keys": tensor_spec((2,), "int64", 0, 9, layout)}
        if odd(draw, rate):
            del batch[draw(st.sampled_from(("input_ids", "pixel_values", "sample_keys")))]
        args = dict(config=config, batch=batch)
        judge(runner.run(probe("device_masker", args)), args)
        return
    length = draw(st.integers(1, 24))
    row = st.lists(st.integers(5, VOCAB - 20), min_size=length if kind == "t5" else 0, max_size=length)
    if rate:
        row = st.one_of(row, st.sampled_from((None, "text", [1.5, 2.0], [None], [2**63], [-1, 5], [[1, 2]], (5, 6, 7))))
    features = draw(st.lists(st.fixed_dictionaries({"input_ids": row}) if draw(st.booleans()) else row,
                             min_size=1 if not rate else 0, max_size=3))
    args = dict(collator=kind, features=features, seed=7)
    if kind in ("block", "mae"):
        pixels = st.sampled_from((tensor_spec((3, 4, 4), "float32"),) + ((tensor_spec((3, 4, 5), "float32"), None, "x") if rate else ()))
        args["features"] = [{"pixel_values": draw(pixels)} for _ in range(draw(st.integers(0, 3)))]
        if kind == "mae":
            args.update(num_patches=draw(st.sampled_from((16, 0, 2**31))), mask_ratio=draw(st.sampled_from((0.75, 1.0))))
    judge(runner.run(probe("collate", args)), args)


def test_the_runner_reports_crashes_and_hangs(runner):
    """The harness itself: a child that dies fails the probe instead of pytest (runs last: the next
    probe would wait for a new worker)."""
    assert runner.run(probe("_segfault", {}, backends=("-",))).startswith("crash")


def _segfault(args, backend):
    import ctypes

    ctypes.string_at(0)


OPS["_segfault"] = _segfault
