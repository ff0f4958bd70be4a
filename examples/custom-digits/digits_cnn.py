"""A small CNN on the 8x8 digits: a Flywheel training entry point with a named tensor input.

spec.trainer.entryPoint `digits_cnn:train` (spec.trainer.path: this folder). The TrainingRun declares
one input tensor, `image` [1, 8, 8], filled row-major from the columns px0..px63 (columnPrefix px).
Flywheel resolves and gates the data, splits it, and ctx.encode(frame) gives {"image": [N, 1, 8, 8]}
FP32, the pixels as they are (0..16, no scaling: the network does its own, so the exported model
takes the raw pixels serving receives). This file defines the network and its loop and returns the
trained module; Flywheel exports it (fp32 ONNX, static int8), scores the holdout, writes the card
(inputs.kind tensors) and serves it: records on /predict, the `image` tensor on the Open Inference
Protocol. See docs/custom-training.md.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from flywheel.training import TrainContext, Trained

PIXEL_MAX = 16.0  # load_digits' pixels are 0..16


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, one 2x2 pooling, a small head: ~10k parameters, a few seconds an epoch
    on one CPU core."""

    def __init__(self, channels: int, hidden: int, dropout: float, n_out: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * channels * 4 * 4, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_out),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # The argument's name is the tensor's (spec.trainer.inputs): the exported model's input.
        return self.head(self.features(image / PIXEL_MAX))


def train(ctx: TrainContext) -> Trained:
    hp = {"channels": 8, "hidden": 64, "dropout": 0.1, **ctx.hyperparameters}
    images, labels = ctx.encode(ctx.train)["image"], ctx.labels(ctx.train)
    net = DigitsCNN(int(hp["channels"]), int(hp["hidden"]), float(hp["dropout"]), ctx.n_outputs)
    if ctx.start_state is not None:  # fine-tune (model.initFrom): continue from the champion
        net.load_state_dict(ctx.start_state)
    model = ctx.wrap(net)  # DDP across the torchrun workers; gradients averaged
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=ctx.training.learning_rate, weight_decay=ctx.training.weight_decay
    )
    first = step = 0
    saved = ctx.checkpoints.latest()
    if saved is not None:  # a killed run starts again here, from its last finished epoch
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        first, step = saved["epoch"], saved["steps"]
    sampler = DistributedSampler(
        range(len(labels)), num_replicas=ctx.world_size, rank=ctx.rank, seed=ctx.training.seed
    )
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(first, ctx.training.epochs):
        sampler.set_epoch(epoch)  # each rank its own shard, reshuffled every epoch
        order = torch.tensor(list(sampler), dtype=torch.long)
        total = 0.0
        model.train()
        for batch in order.split(ctx.training.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            total, step = total + loss.item(), step + 1
        mean = ctx.all_mean(total / max(1, math.ceil(len(order) / ctx.training.batch_size)))
        ctx.report.epoch(epoch + 1, step, mean, holdout=_accuracy(net, ctx) if ctx.is_main else None)
        state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1}
        ctx.checkpoints.save({**state, "steps": step}, step)
    net.eval()
    return Trained(net, ctx.encode(ctx.train.head(2)), summary={"steps": step, "epochs": ctx.training.epochs})


def _accuracy(net: nn.Module, ctx: TrainContext) -> float:
    net.eval()
    with torch.inference_mode():
        predicted = net(ctx.encode(ctx.holdout)["image"]).argmax(1)
    net.train()
    return float((predicted == ctx.labels(ctx.holdout)).float().mean())
