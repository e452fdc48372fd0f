"""Masked-LM training under DistributedDataParallel (gloo on CPUs here; NCCL the same way on GPUs):

    python examples/ddp_mlm.py --world 2

Every rank reads its share of the samples through a DistributedSampler; IndexedDataset gives each
sample a key made of its index and the epoch, and fastmask's collator masks a sample from
(seed, key) alone. So a sample gets the same mask on whichever rank reads it, and the same mask as
in a one-process run: the mask is a property of the sample, not of the rank, the batch or the worker
(docs/distributed.md). The loss is the sparse head, fastmask.masked_lm_loss on the predicted rows.
"""
import argparse
import os
import tempfile

import torch
import torch.distributed as dist
import transformers

import fastmask
from fastmask.bench.cases.masking import tokenizer as offline_tokenizer
from fastmask.collators import IndexedDataset, MLMCollator

SENTENCES = ["the cat sat on the mat and looked at the dog", "a dog ran in the park after the red ball",
             "the sun rises in the east and sets in the west", "birds sing in the trees early in the morning"]
SAMPLES = 24


def dataset_and_collator():
    tokenizer = offline_tokenizer()
    dataset = IndexedDataset([dict(tokenizer(SENTENCES[i % 4] + " " + SENTENCES[(i * 3) % 4])) for i in range(SAMPLES)])
    return tokenizer, dataset, MLMCollator(tokenizer, seed=0, mlm_probability=0.15, max_predictions=8)


def loader_of(dataset, collator, rank, world, epoch, batch_size=4):
    """This rank's batches of the epoch, and the sample index of each of their rows in order."""
    sampler = torch.utils.data.distributed.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=0)
    sampler.set_epoch(epoch)  # the order of the samples
    dataset.set_epoch(epoch)  # their keys, hence their masks
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collator)
    return loader, list(sampler)


def masks_of_rank(rank, world, epoch):
    """{sample index: its labels (-100 where not masked), padding stripped} as this rank masks them."""
    _, dataset, collator = dataset_and_collator()
    loader, order = loader_of(dataset, collator, rank, world, epoch)
    masks, rows = {}, iter(order)
    for batch in loader:
        for labels, attention in zip(batch["labels"], batch["attention_mask"]):
            masks[next(rows)] = labels[: int(attention.sum())].clone()
    return masks


class SparseMLM(torch.nn.Module):
    """BERT's encoder and the masked-LM loss on the predicted rows only: the module DDP wraps, so its
    gradient hooks all-reduce every parameter's gradient after backward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, labels, masked_positions, **batch):
        head = self.model.cls.predictions
        hidden = self.model.bert(**batch).last_hidden_state
        return fastmask.masked_lm_loss(head.transform(hidden), head.decoder.weight, labels, bias=head.decoder.bias,
                                       positions=masked_positions)


def train(rank, world, steps=4, epochs=1):
    tokenizer, dataset, collator = dataset_and_collator()
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64))
    ddp = torch.nn.parallel.DistributedDataParallel(SparseMLM(model))
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=2e-3)
    for epoch in range(epochs):
        loader, _ = loader_of(dataset, collator, rank, world, epoch)
        for step, batch in enumerate(loader):
            if step == steps:
                break
            loss = ddp(**batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if rank == 0:
                print(f"epoch {epoch} step {step}: loss {loss.item():.4f}")


def _run(rank, world, rendezvous):
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        train(rank, world)
    finally:
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_run, args=(args.world, os.path.join(tmp, "rendezvous")), nprocs=args.world)


if __name__ == "__main__":
    main()
