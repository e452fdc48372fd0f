"""One call trains a Hugging Face masked-LM model with fastmask's sparse LM head (docs/integrations.md).

    model = transformers.AutoModelForMaskedLM.from_pretrained(name)
    fastmask.integrations.hf.apply_fastmask(model)       # unpatch(model) restores it

How: while patched, the model's output embeddings (the decoder Linear, [V, D]) pass their input through,
so the model's own forward, called without labels, computes everything up to the decoder: the head's
transformed hidden states [B, L, D]. The patched forward hands those, the decoder's weight and bias, the
labels and the collator's "masked_positions" to fastmask.masked_lm_loss, so the [B, L, V] logits are
never made in training. Only the instance is patched, never the class.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Optional

import torch
from transformers.modeling_outputs import MaskedLMOutput

from .._backend import autocast_dtype
from ..functional import masked_lm_loss

__all__ = ["FAMILIES", "FastMaskedLMOutput", "apply_fastmask", "is_patched", "unpatch"]

# Tested on tiny configs (tests/test_integrations_hf.py); any other *ForMaskedLM whose logits are its
# output-embeddings Linear applied last (a transform, then the decoder) takes the same path.
FAMILIES = ("AlbertForMaskedLM", "BertForMaskedLM", "DistilBertForMaskedLM", "ElectraForMaskedLM",
            "ModernBertForMaskedLM", "RobertaForMaskedLM", "XLMRobertaForMaskedLM")

_STATE = "_fastmask_patch"  # the instance attribute that holds a patched model's options
_EXTRA = ("masked_positions", "return_logits")  # keyword arguments the patched forward adds


@dataclasses.dataclass
class FastMaskedLMOutput(MaskedLMOutput):
    """HF's MaskedLMOutput (loss, logits, hidden_states, attentions) plus head_hidden: the LM head's input
    [B, L, D] (the decoder's input, after the head's transform), when asked for. Fields left None are
    not in the output's keys or tuple, as with every ModelOutput."""

    head_hidden: Optional[torch.Tensor] = None


@dataclasses.dataclass
class _Patch:
    eval_logits: bool
    return_head_hidden: bool
    max_rows: Optional[int]
    chunk_size: Optional[int]
    by_items: bool  # the model's own loss divides by Trainer's num_items_in_batch (self.loss_function)
    names: tuple  # the model forward's parameter names, to bind positional arguments
    prior_forward: object  # instance-level forwards found at patch time (accelerate's hooks), or None
    prior_decoder_forward: object


class _PassThrough:
    """The decoder's forward while patched: its input, unchanged (the head's transformed hidden states)."""

    def __call__(self, hidden):
        return hidden


class _PatchedForward:
    """The model's forward while patched; carries the model's signature plus masked_positions and
    return_logits, so Trainer's column removal and loss-kwargs detection see what they saw before."""

    def __init__(self, model, signature):
        self.model = model
        self.__signature__ = signature

    def __call__(self, *args, **kwargs):
        return _forward(self.model, args, kwargs)


def _forward(model, args, kwargs):
    patch = getattr(model, _STATE)
    if args:
        kwargs.update(zip(patch.names, args))
    labels = kwargs.pop("labels", None)
    positions = kwargs.pop("masked_positions", None)
    return_logits = kwargs.pop("return_logits", None)
    return_dict = kwargs.pop("return_dict", None)
    if return_logits is None:
        return_logits = patch.eval_logits and not model.training

    original = patch.prior_forward or type(model).forward.__get__(model)
    outputs = original(**kwargs)  # no labels: no loss; the decoder hands back its input
    decoder = model.get_output_embeddings()
    hidden = outputs.logits
    if hidden is None or hidden.shape[-1] != decoder.in_features:
        raise TypeError(f"apply_fastmask: {type(model).__name__}'s logits are not its output embeddings applied last "
                        "(a transform, then the decoder); unpatch it and use masked_lm_loss directly")
    loss = None
    if labels is not None:
        normalizer = kwargs.get("num_items_in_batch") if patch.by_items else None
        weight, bias, rows = decoder.weight, decoder.bias, hidden
        dtype = autocast_dtype(hidden.device)
        if dtype is not None:  # the stock decoder's Linear would run in the autocast dtype
            weight, rows, bias = weight.to(dtype), rows.to(dtype), None if bias is None else bias.to(dtype)
        loss = masked_lm_loss(rows, weight, labels.to(hidden.device), bias=bias, positions=positions,
                              max_rows=patch.max_rows, normalizer=normalizer, chunk_size=patch.chunk_size)
        loss = loss.float()  # as the stock cross-entropy, which autocast runs in fp32
    logits = torch.nn.functional.linear(hidden, decoder.weight, decoder.bias) if return_logits else None
    out = FastMaskedLMOutput(
        loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions,
        head_hidden=hidden if patch.return_head_hidden else None)
    return out.to_tuple() if return_dict is False else out


def apply_fastmask(model, *, eval_logits: bool = True, return_head_hidden: bool = False, max_rows: Optional[int] = None,
                   chunk_size: Optional[int] = None):
    """Patch a HF *ForMaskedLM model in place (and return it): a forward with labels computes the loss
    with fastmask.masked_lm_loss on the labelled rows only (or batch["masked_positions"], which
    MLMCollator(max_predictions=K) sends), with the same value and gradients as the stock model.

    - In training the output's logits are None (no [B, L, V] logits). In eval mode (model.eval(), as
      Trainer evaluates) the full logits come back too, so compute_metrics works; eval_logits=False
      keeps them off, and return_logits=True/False in a forward call decides for that call.
    - return_head_hidden=True adds `head_hidden`, the LM head's input [B, L, D] (logits =
      head_hidden @ decoder.weight.T + bias), e.g. for a distillation loss on the predicted rows.
    - max_rows and chunk_size go to masked_lm_loss (a GPU without masked_positions multiplies every row
      unless max_rows caps them; docs/lm_loss.md).

    unpatch(model) restores the stock forward. While patched, the output embeddings module returns its
    input when called directly; its weights, state_dict and tying are untouched."""
    name = type(model).__name__
    if not isinstance(model, torch.nn.Module) or not name.endswith("ForMaskedLM"):
        raise TypeError(f"model: expected a Hugging Face *ForMaskedLM model, got {name}")
    decoder = model.get_output_embeddings()
    if type(decoder) is not torch.nn.Linear:
        raise TypeError(f"model: {name}'s output embeddings are {type(decoder).__name__}, not a torch.nn.Linear decoder")
    for option, value in (("eval_logits", eval_logits), ("return_head_hidden", return_head_hidden)):
        if not isinstance(value, bool):
            raise TypeError(f"{option}: expected a bool, got {type(value).__name__}")
    if is_patched(model):
        unpatch(model)

    signature = inspect.signature(model.forward)
    params = list(signature.parameters.values())
    if any(p.name in _EXTRA for p in params):
        raise TypeError(f"model: {name}.forward already takes {', '.join(_EXTRA)}")
    names = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in _EXTRA]
    tail = [p for p in params if p.kind == p.VAR_KEYWORD]
    signature = signature.replace(parameters=[p for p in params if p.kind != p.VAR_KEYWORD] + extra + tail)
    try:
        by_items = "self.loss_function" in inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        by_items = False

    setattr(model, _STATE, _Patch(eval_logits, return_head_hidden, max_rows, chunk_size, by_items, names,
                                  model.__dict__.get("forward"), decoder.__dict__.get("forward")))
    decoder.forward = _PassThrough()
    model.forward = _PatchedForward(model, signature)
    return model


def is_patched(model) -> bool:
    return hasattr(model, _STATE)


def unpatch(model):
    """Undo apply_fastmask (a model that is not patched is returned unchanged)."""
    if not is_patched(model):
        return model
    patch = getattr(model, _STATE)
    for module, prior in ((model.get_output_embeddings(), patch.prior_decoder_forward), (model, patch.prior_forward)):
        if prior is None:
            module.__dict__.pop("forward", None)
        else:
            module.forward = prior
    delattr(model, _STATE)
    return model
