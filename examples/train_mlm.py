"""A masked-LM training loop in both of fastmask's modes, on any device:

    python examples/train_mlm.py --mode collator     # masking in the DataLoader workers (MLMCollator)
    python examples/train_mlm.py --mode device       # workers only pad; masking inside the step (DeviceMasker)
    python examples/train_mlm.py --mode device --device cuda --compile

Both modes give the same masks for the same (seed, sample index, epoch), so the two runs print the same
losses: only where the masking runs differs. The loss is the sparse head (fastmask.masked_lm_loss on
the predicted rows only).
"""
import argparse
import time

import torch
import transformers

import fastmask
from fastmask.bench.cases.masking import tokenizer as offline_tokenizer
from fastmask.collators import DeviceMasker, IndexedDataset, MLMCollator

SENTENCES = ["the cat sat on the mat and looked at the dog", "a dog ran in the park after the red ball",
             "the sun rises in the east and sets in the west", "birds sing in the trees early in the morning"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("collator", "device"), default="device")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile the masker and the loss step")
    args = parser.parse_args()

    tokenizer = offline_tokenizer()
    dataset = IndexedDataset([dict(tokenizer(SENTENCES[i % 4] + " " + SENTENCES[(i * 3) % 4])) for i in range(256)])
    config = MLMCollator(tokenizer, seed=0, mlm_probability=0.15, max_predictions=8)
    masker = DeviceMasker(config) if args.mode == "device" else None
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, num_workers=args.workers,
                                         collate_fn=masker.collator() if masker else config,
                                         persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=64)).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    head = model.cls.predictions

    def loss_of(batch):
        if masker is not None:
            batch = masker(batch)  # one kernel on batch's device; removes sample_keys
        labels, positions = batch.pop("labels"), batch.pop("masked_positions")
        hidden = model.bert(**batch).last_hidden_state
        return fastmask.masked_lm_loss(head.transform(hidden), head.decoder.weight, labels, bias=head.decoder.bias,
                                       positions=positions)

    step = torch.compile(loss_of) if args.compile else loss_of
    for epoch in range(args.epochs):
        dataset.set_epoch(epoch)  # a new mask for every sample, in every worker
        start, losses = time.perf_counter(), []
        for batch in loader:
            batch = {k: v.to(args.device, non_blocking=True) for k, v in batch.items()}
            loss = step(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        mean = torch.stack(losses).mean().item()
        print(f"epoch {epoch}: mean loss {mean:.4f}, {time.perf_counter() - start:.2f} s ({args.mode} masking)")


if __name__ == "__main__":
    main()
