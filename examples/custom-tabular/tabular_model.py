"""A residual MLP with embeddings for the categorical features: a Flywheel training entry point.

spec.trainer.entryPoint `tabular_model:train` (spec.trainer.path: this folder). Flywheel resolves and
gates the data, splits it and encodes it; this file defines the network and its loop, and returns the
trained module. Flywheel then exports it (fp32 ONNX, static int8), scores the holdout, writes the card
and serves it like the built-in model. See docs/custom-training.md.

The feeds (ctx.encode) follow the card's `tabular` inputs: `numeric` FP32 [N, n_numeric]
(standardised) and `categorical` INT64 [N, n_categorical] with 1 + the category's index, 0 for a
missing or unseen value. So each embedding has len(categories) + 1 rows, and row 0 is "unknown".

The Shuttle data has no categorical column (nine integer sensor readings), so besides an embedding
per categorical feature (none there) the network embeds a bucketised numeric one: the
hyperparameter `bucketColumn` (default f1, the mission time) cut at its training-split quantiles
into `buckets` bins. The bucketing is part of the module (comparisons against a buffer), so the
exported ONNX model does it too and the served features stay the plain numeric columns.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from flywheel.training import TrainContext, Trained


class Residual(nn.Module):
    """x + f(x): two linear layers around a ReLU, so depth does not make training harder."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class TabularNet(nn.Module):
    """Embeddings of the categorical columns and of one bucketised numeric column beside the numeric
    ones, then residual blocks."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        bucketed: int | None,
        boundaries: torch.Tensor,
        hp: dict[str, int | float],
        n_out: int,
    ) -> None:
        super().__init__()
        width, embed = int(hp["width"]), int(hp["embed"])
        self.embeddings = nn.ModuleList(nn.Embedding(n + 1, embed) for n in cardinalities)
        self.bucketed = bucketed  # index of the bucketised column in `numeric`, or None
        self.register_buffer("boundaries", boundaries)  # saved with the weights, exported as a constant
        self.bucket_embedding = nn.Embedding(len(boundaries) + 1, embed)
        extra = embed * (len(cardinalities) + (bucketed is not None))
        self.stem = nn.Sequential(nn.Linear(n_numeric + extra, width), nn.ReLU())
        self.blocks = nn.Sequential(*(Residual(width, float(hp["dropout"])) for _ in range(int(hp["depth"]))))
        self.head = nn.Linear(width, n_out)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor | None = None) -> torch.Tensor:
        # Standardised readings beyond 6 deviations are outliers (Shuttle has some at -50): clipped,
        # they cannot dominate a layer, nor stretch int8's activation range over nothing.
        numeric = numeric.clamp(-6.0, 6.0)
        parts = [numeric]
        if categorical is not None:
            parts += [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        if self.bucketed is not None:
            # bucket = how many boundaries the value exceeds: plain comparisons, which ONNX exports
            column = numeric[:, self.bucketed : self.bucketed + 1]
            parts.append(self.bucket_embedding((column > self.boundaries).sum(dim=1)))
        return self.head(self.blocks(self.stem(torch.cat(parts, dim=1))))


def train(ctx: TrainContext) -> Trained:
    hp = {"width": 64, "depth": 2, "embed": 4, "dropout": 0.1, "unknownRate": 0.05, "bucketColumn": "f1",
          "buckets": 8, **ctx.hyperparameters}  # fmt: skip
    numeric, categorical = ctx.inputs["numeric"], ctx.inputs["categorical"]
    feeds, labels = ctx.encode(ctx.train), ctx.labels(ctx.train)
    bucketed = numeric.index(hp["bucketColumn"]) if hp["bucketColumn"] in numeric else None
    boundaries = torch.zeros(0)
    if bucketed is not None:
        boundaries = _boundaries(feeds["numeric"][:, bucketed].cpu(), int(hp["buckets"]))
    net = TabularNet(
        len(numeric), [len(ctx.categories(c)) for c in categorical], bucketed, boundaries, hp, ctx.n_outputs
    )
    if ctx.start_state is not None:  # fine-tune (model.initFrom): continue from the champion
        net.load_state_dict(ctx.start_state)
    model = ctx.wrap(net)  # DDP across the torchrun workers; gradients averaged
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=ctx.training.learning_rate, weight_decay=ctx.training.weight_decay
    )
    start = step = 0
    saved = ctx.checkpoints.latest()
    if saved is not None:  # a killed run starts again here, from its last finished epoch
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start, step = saved["epoch"], saved["steps"]
    loss_fn = nn.CrossEntropyLoss(
        weight=_weights(labels, ctx.n_outputs) if ctx.training.class_weighting == "balanced" else None
    )
    sampler = DistributedSampler(
        range(len(labels)), num_replicas=ctx.world_size, rank=ctx.rank, seed=ctx.training.seed
    )
    for epoch in range(start, ctx.training.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long)
        total = 0.0
        for batch in order.split(ctx.training.batch_size):
            cat = feeds.get("categorical")
            if cat is not None:  # teach row 0 ("unknown") by hiding a few known categories
                cat = cat[batch].masked_fill(
                    torch.rand(len(batch), cat.shape[1], device=cat.device) < hp["unknownRate"], 0
                )
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(feeds["numeric"][batch], cat), labels[batch])
            loss.backward()
            optimizer.step()
            total, step = total + loss.item(), step + 1
        mean = ctx.all_mean(total / max(1, math.ceil(len(order) / ctx.training.batch_size)))
        ctx.report.epoch(epoch + 1, step, mean, holdout=_accuracy(net, ctx) if ctx.is_main else None)
        ctx.checkpoints.save(
            {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "steps": step,
            },
            step,
        )
    return Trained(net, ctx.encode(ctx.train.head(2)), summary={"steps": step, "epochs": ctx.training.epochs})


def _boundaries(column: torch.Tensor, buckets: int) -> torch.Tensor:
    """Cut points at the training split's quantiles, each moved to the middle between the two
    observed values around it: int8 serving perturbs inputs slightly, and a cut sitting exactly on
    a common value would move those rows to the next bucket. Every rank computes the same ones."""
    values = torch.unique(column)  # sorted
    cuts = torch.quantile(column, torch.linspace(0, 1, buckets + 1)[1:-1])
    above = torch.searchsorted(values, cuts, right=True).clamp(1, max(1, len(values) - 1))
    return torch.unique((values[above - 1] + values[above]) / 2)


def _weights(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Balanced class weights: a rare class (an anomaly) weighs as much as a common one."""
    counts = torch.bincount(labels, minlength=n).float().clamp(min=1)
    return len(labels) / (n * counts)


def _accuracy(net: nn.Module, ctx: TrainContext) -> float:
    net.eval()
    with torch.inference_mode():
        feeds = ctx.encode(ctx.holdout)
        pred = net(feeds["numeric"], feeds.get("categorical")).argmax(1)
    net.train()
    return float((pred == ctx.labels(ctx.holdout)).float().mean())
