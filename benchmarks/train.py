"""Benchmark: seconds per training epoch and peak RSS at INSVIDEO's size.

213,847 posts (80% training), 6,786 users, a 15,751-hashtag vocabulary, synthetic units
(visual 8 x 512, acoustic 8 x 128, textual 16 x 384, float16 as the trainer keeps them) and a
graph with the default degrees (10 kNN neighbours per modality node, both directions; 10 user
neighbours; every post linked to its user). The inputs are built in memory, not read from a
dataset, so the figures are the training step's alone: one full-batch epoch is the encoders,
two GraphSAGE layers, fusion, the chunked softmax cross-entropy, backward and one Adam step,
with the trainer's hashtag-input split (by default half the training posts are loss posts).

With `--batch-size B` an epoch is mini-batch training's instead (`Trainer.mini_batch_epoch`):
the same loss posts in steps of B, each over its sampled neighbourhood (`--fanouts`,
`--user-posts`), timed apart: sampling, forward (encoders, layers, fusion, loss), backward and
step. Peak RSS includes the inputs (`inputs_peak_rss_mb` is theirs alone). `--encode-all` then
times the no-gradient pass over every post that each validation runs, `--encode-sampled N`
validation over sampled neighbourhoods of N posts (`train.validation: sampled`).

With `--device cuda` the inputs and the network move to the GPU after the inputs are built
(on the CPU, as `mishon train` builds them), each epoch is timed to a CUDA synchronise, and the
peak GPU memory (torch's allocator: allocated and reserved) is reported beside the peak RSS.

Usage: python benchmarks/train.py [--posts 213847] [--users 6786] [--hashtags 15751] [--epochs 3]
       [--no-label-inputs] [--device auto|cpu|cuda|cuda:N] [--loss-chunk 4096]
       [--batch-size B [--fanouts 10 10] [--user-posts 20] [--steps S]] [--shapes paper|small]
       [--encode-all] [--encode-sampled N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch

from memory import PeakRss
from mishon.config import ModelSettings, TrainSettings
from mishon.device import resolve_device
from mishon.graph.build import coalesce, symmetric
from mishon.model.inference import encode_eval, encode_sampled_eval, label_split
from mishon.model.inputs import ModalityUnits, ModelInputs, Targets, Vocabulary, adjacency
from mishon.model.network import MishonNetwork
from mishon.model.sampling import NeighbourSampler
from mishon.train.trainer import epoch_seed

PAPER_SHAPES = {"visual": (8, 512), "acoustic": (8, 128), "textual": (16, 384)}
# units small enough that 2,000,000 posts' inputs fit beside the training step
SMALL_SHAPES = {"visual": (4, 32), "acoustic": (4, 16), "textual": (4, 32)}
SHAPES = {"paper": PAPER_SHAPES, "small": SMALL_SHAPES}


def random_knn(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    rows = np.repeat(np.arange(n), k)
    return np.stack([rows, rng.integers(0, n, size=n * k)])


def make_inputs(
    posts: int,
    users: int,
    hashtags: int,
    shapes: dict[str, tuple[int, int]] = PAPER_SHAPES,
    seed: int = 0,
) -> ModelInputs:
    rng = np.random.default_rng(seed)
    post_user = np.sort(rng.integers(0, users, size=posts))
    train = rng.random(posts) < 0.8
    modalities = {}
    for name, (units, dim) in shapes.items():
        values = torch.empty((posts, units, dim), dtype=torch.float16)
        for start in range(0, posts, 16384):
            block = values[start : start + 16384]
            block.copy_(torch.randn(block.shape, generator=torch.Generator().manual_seed(start)))
        mask = torch.ones((posts, units), dtype=torch.bool)
        modalities[name] = ModalityUnits(values, mask)
    matrices = {}
    ones = np.ones
    for name in shapes:
        index, _ = symmetric(random_knn(posts, 10, rng), ones(posts * 10, np.float32), posts)
        matrices[(name, "similar", name)] = adjacency(index, posts, posts)
        forward = np.stack([post_user, np.arange(posts)])
        index, _ = coalesce(forward, ones(posts, np.float32), users, posts)
        matrices[("user", "posted", name)] = adjacency(index, users, posts)
        matrices[(name, "posted_by", "user")] = adjacency(index[::-1].copy(), posts, users)
    index, _ = symmetric(random_knn(users, 10, rng), ones(users * 10, np.float32), users)
    matrices[("user", "similar", "user")] = adjacency(index, users, users)
    # Zipf-like hashtag use, 1 to 4 per post, training posts only (as build_inputs does).
    popularity = 1.0 / np.arange(1, hashtags + 1) ** 0.9
    popularity /= popularity.sum()
    counts = rng.integers(1, 5, size=posts)
    drawn = rng.choice(hashtags, size=int(counts.sum()), p=popularity)
    tags, start = [], 0
    for count, is_train in zip(counts, train, strict=True):
        tags.append([f"t{i}" for i in drawn[start : start + count]] if is_train else [])
        start += count
    vocabulary = Vocabulary([f"t{i}" for i in range(hashtags)])
    trained = torch.zeros(users, dtype=torch.bool)
    trained[torch.from_numpy(post_user[train])] = True
    return ModelInputs(
        modalities=modalities,
        post_user=torch.from_numpy(post_user),
        user_trained=trained,
        num_users=users,
        adjacency=matrices,
        vocabulary=vocabulary,
        targets=Targets.build(tags, vocabulary),
    )


def full_batch_epoch(
    network: MishonNetwork,
    optimizer: torch.optim.Optimizer,
    inputs: ModelInputs,
    train: TrainSettings,
    sync: Callable[[], None],
) -> tuple[float, dict[str, float], int]:
    """One full-batch step, timed by stage: (loss, stage seconds, loss posts)."""
    stages: dict[str, float] = {}
    clock = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    label_scale, loss_positions = label_split(network, inputs.train_positions(), inputs.num_posts)
    fused = network.encode(inputs, label_scale)
    sync()
    stages["encode_s"] = time.perf_counter() - clock
    loss = network.loss(fused, inputs, loss_positions, train.loss_chunk)
    sync()
    stages["loss_s"] = time.perf_counter() - clock - stages["encode_s"]
    loss.backward()
    optimizer.step()
    sync()
    stages["backward_and_step_s"] = time.perf_counter() - clock - sum(stages.values())
    return loss.item(), stages, len(loss_positions)


def mini_batch_epoch(
    network: MishonNetwork,
    optimizer: torch.optim.Optimizer,
    inputs: ModelInputs,
    train: TrainSettings,
    sampler: NeighbourSampler,
    epoch: int,
    sync: Callable[[], None],
    most_steps: int | None = None,
) -> tuple[float, dict[str, float], int]:
    """`Trainer.mini_batch_epoch` in one process, timed by stage; with `most_steps`, the
    epoch's time is its first steps' mean times the steps of the whole epoch."""
    assert train.batch_size is not None
    stages = dict.fromkeys(("sample_s", "forward_s", "backward_and_step_s"), 0.0)
    shared = torch.Generator().manual_seed(epoch_seed(train.seed, epoch))
    label_scale, loss_positions = label_split(
        network, inputs.train_positions(), inputs.num_posts, shared
    )
    order = torch.randperm(len(loss_positions), generator=shared).to(inputs.device)
    total, nodes, posts = 0.0, 0, 0
    steps = loss_positions[order].split(train.batch_size)
    for step in steps[:most_steps]:
        clock = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        batch = sampler.sample(step, epoch).to(inputs.device)
        nodes += sum(len(n) for n in batch.nodes.values())
        stages["sample_s"] += time.perf_counter() - clock
        clock = time.perf_counter()
        fused = network.encode_sampled(inputs, batch, label_scale)
        summed = network.summed_loss(fused, inputs, step, train.loss_chunk)
        sync()
        stages["forward_s"] += time.perf_counter() - clock
        clock = time.perf_counter()
        (summed / len(step)).backward()
        optimizer.step()
        sync()
        stages["backward_and_step_s"] += time.perf_counter() - clock
        total += summed.item()
        posts += len(step)
    done = min(len(steps), most_steps or len(steps))
    stages = {k: v * len(steps) / done for k, v in stages.items()}
    stages["steps_run"] = done
    stages["steps_per_epoch"] = len(steps)
    stages["bottom_nodes_per_step"] = nodes / done
    return total / posts, stages, len(loss_positions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=213847)
    parser.add_argument("--users", type=int, default=6786)
    parser.add_argument("--hashtags", type=int, default=15751)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--label-inputs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hashtag inputs (default model); --no-label-inputs: the paper's model, whose loss "
        "covers every training post",
    )
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--loss-chunk", type=int, default=TrainSettings().loss_chunk)
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch; default full")
    parser.add_argument("--fanouts", type=int, nargs="+", default=TrainSettings().fanouts)
    parser.add_argument("--user-posts", type=int, default=TrainSettings().user_posts)
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="paper")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="mini-batch: run only the first STEPS steps of each epoch; its seconds are "
        "extrapolated to the whole epoch (steps_run says how many ran)",
    )
    parser.add_argument(
        "--encode-all",
        action="store_true",
        help="after the epochs, time the no-gradient pass over every post that validation runs",
    )
    parser.add_argument(
        "--encode-sampled",
        type=int,
        default=0,
        help="mini-batch: then time sampled validation (train.validation sampled) of N posts",
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    shapes = SHAPES[args.shapes]
    peak = PeakRss()
    started = time.perf_counter()
    inputs = make_inputs(args.posts, args.users, args.hashtags, shapes)
    build_s = time.perf_counter() - started
    input_peak = peak.take()
    inputs = inputs.to(device)
    model = ModelSettings(label_inputs=args.label_inputs)
    train = TrainSettings(
        loss_chunk=args.loss_chunk,
        device=args.device,
        batch_size=args.batch_size,
        fanouts=args.fanouts,
        user_posts=args.user_posts,
    )
    torch.manual_seed(0)
    network = MishonNetwork(
        model,
        {m: u.units.shape[2] for m, u in inputs.modalities.items()},
        inputs.num_users,
        len(inputs.vocabulary),
        list(inputs.adjacency),
    ).to(device)
    on_gpu = device.type == "cuda"

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize(device)

    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=train.lr)
    sampler = None
    if train.batch_size is not None:
        fanouts = train.fanouts[: model.layers]
        sampler = NeighbourSampler(
            inputs, network.edge_types, network.modalities, fanouts, train.user_posts, 0
        )
    epochs = []
    for epoch in range(1, args.epochs + 1):
        clock = time.perf_counter()
        if sampler is None:
            loss, stages, loss_posts = full_batch_epoch(network, optimizer, inputs, train, sync)
        else:
            loss, stages, loss_posts = mini_batch_epoch(
                network, optimizer, inputs, train, sampler, epoch, sync, args.steps
            )
        total = time.perf_counter() - clock
        if "steps_run" in stages:  # the whole epoch's, extrapolated from the steps run
            total *= stages["steps_per_epoch"] / stages["steps_run"]
        row = {"epoch": epoch, "seconds": round(total, 2), "loss": round(loss, 4)}
        row.update({k: round(v, 2) for k, v in stages.items()})
        row["peak_rss_mb"] = round(peak.take())
        if on_gpu:
            row["gpu_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
            row["gpu_peak_reserved_mb"] = round(torch.cuda.max_memory_reserved(device) / 2**20)
        epochs.append(row)
        print(json.dumps(row), flush=True)
    encoded = {}
    if args.encode_all:  # what each validation does first: every post, no gradient
        clock = time.perf_counter()
        encode_eval(network, inputs)
        sync()
        encoded = {
            "encode_all_s": round(time.perf_counter() - clock, 2),
            "encode_all_peak_rss_mb": round(peak.take()),
        }
    if args.encode_sampled and sampler is not None:  # validation: train.validation sampled
        clock = time.perf_counter()
        posts = np.arange(min(args.encode_sampled, inputs.num_posts))
        encode_sampled_eval(network, inputs, sampler, posts, train.batch_size or 4096)
        encoded |= {
            "encode_sampled_posts": len(posts),
            "encode_sampled_s": round(time.perf_counter() - clock, 2),
            "encode_sampled_peak_rss_mb": round(peak.take()),
        }
    steady = [e["seconds"] for e in epochs[1:]] or [epochs[0]["seconds"]]
    print(
        json.dumps(
            {
                "posts": args.posts,
                "train_posts": len(inputs.train_positions()),
                "users": args.users,
                "hashtags": args.hashtags,
                "shapes": shapes,
                "threads": torch.get_num_threads(),
                "device": str(device),
                "gpu": torch.cuda.get_device_name(device) if on_gpu else None,
                "torch": torch.__version__,
                "loss_chunk": args.loss_chunk,
                "label_inputs": args.label_inputs,
                "batch_size": train.batch_size,
                "fanouts": train.fanouts[: model.layers] if train.batch_size else None,
                "user_posts": train.user_posts if train.batch_size else None,
                "loss_posts": loss_posts,
                "build_inputs_s": round(build_s, 1),
                "inputs_peak_rss_mb": round(input_peak),
                "seconds_per_epoch": round(float(np.median(steady)), 2),
                "peak_rss_mb": max(e["peak_rss_mb"] for e in epochs),
                "gpu_peak_allocated_mb": epochs[-1].get("gpu_peak_allocated_mb"),
                "gpu_peak_reserved_mb": epochs[-1].get("gpu_peak_reserved_mb"),
                **encoded,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
