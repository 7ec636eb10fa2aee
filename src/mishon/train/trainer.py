"""Training with Adam and early stopping on validation F1@K, full-batch or mini-batch.

An epoch's loss covers every training post, or, with hashtag inputs, the random share hiding
theirs (`label_split`). Full-batch (the default), an epoch is one optimisation step that
encodes the whole graph. Mini-batch (`batch_size`), the epoch's loss posts are shuffled into
steps of `batch_size` posts, each encoded over its sampled neighbourhood
(`model.sampling`); memory then grows with the batch, not the graph. Mini-batch epochs draw
their label split, order and samples from (seed, epoch) alone, so several processes
(`distributed`) agree on them, each taking its share of every step.
Every `eval_every` epochs the model ranks the validation posts; the best F1@K keeps its
weights, and training stops after `patience` epochs without a better one. With an output
directory, each validation also writes the resumable state (weights, Adam state, RNG state,
counters) and the history, so a crash loses at most `eval_every` epochs.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from mishon.config import TrainSettings
from mishon.data.split_data import SplitData
from mishon.data.store import atomic_path, complete_pending, pending_path, write_json
from mishon.errors import MishonError
from mishon.lineage import file_digest
from mishon.metrics import ranking_metrics
from mishon.model.inference import encode_eval, encode_sampled_eval, label_split, top_k
from mishon.model.inputs import ModelInputs
from mishon.model.network import MishonNetwork
from mishon.model.sampling import NeighbourSampler
from mishon.train.distributed import (
    Processes,
    broadcast_values,
    check_can_train,
    sum_gradients,
)

BEST_WEIGHTS = "model.safetensors"
LAST_WEIGHTS = "last.safetensors"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"
STATE = "trainer.json"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.json"  # the digests of the last complete checkpoint set
CHECKPOINT_FILES = (BEST_WEIGHTS, LAST_WEIGHTS, OPTIMIZER, RNG, HISTORY, STATE)
HISTORY_FIELDS = ("epoch", "loss", "valid_f1", "valid_recall", "valid_ndcg", "seconds")

ProgressFn = Callable[[dict[str, Any]], None]
StepFn = Callable[[int, int, int], None]  # (epoch, steps done, steps of the epoch)


@dataclass
class TrainState:
    """Counters that, with the weights and the optimiser, let training resume exactly."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -1.0  # -1: no validation score yet (or no validation posts)
    stale_epochs: int = 0
    stopped: str | None = None  # "patience" (early stopping) or "epochs" (the limit)
    history: list[dict[str, Any]] = field(default_factory=list)


def validation_metrics(
    network: MishonNetwork,
    inputs: ModelInputs,
    data: SplitData,
    k: int,
    sampler: NeighbourSampler | None = None,
    batch_size: int = 4096,
) -> dict[str, float] | None:
    """F1, recall and NDCG @k on the labelled validation posts (None if there are none):
    over the whole graph, or with `sampler`, over sampled neighbourhoods (bounded memory)."""
    cases = data.cases("valid")
    if not len(cases):
        return None
    if sampler is None:
        fused, rows = encode_eval(network, inputs), cases
    else:
        fused = encode_sampled_eval(network, inputs, sampler, cases, batch_size)
        rows = np.arange(len(cases))
    k = min(k, len(inputs.vocabulary))
    tags = inputs.vocabulary.tags
    ranked = [[tags[i] for i in row] for row in top_k(network, fused, rows, k)]
    truth = [set(t) for t in data.posts["hashtags"].to_numpy()[cases]]
    m = ranking_metrics(ranked, truth, (k,))
    return {"f1": m[f"F1@{k}"], "recall": m[f"R@{k}"], "ndcg": m[f"NDCG@{k}"]}


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A seed for epoch `epoch`'s draws of stream `stream` (0: shared by all processes)."""
    sequence = np.random.SeedSequence([seed % 2**63, epoch, stream])
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


class Trainer:
    """Trains `network` on `inputs`; selects on the validation posts of `data`."""

    def __init__(
        self,
        network: MishonNetwork,
        inputs: ModelInputs,
        data: SplitData,
        settings: TrainSettings,
        out: Path | None = None,
        processes: Processes | None = None,
    ) -> None:
        self.network = network
        self.inputs = inputs
        self.data = data
        self.settings = settings
        self.out = out
        self.processes = processes or Processes()
        check_can_train(self.processes, settings.batch_size, out)
        self.sampler = (
            NeighbourSampler(
                inputs,
                network.edge_types,
                network.modalities,
                settings.fanouts[: len(network.convs)],
                settings.user_posts,
                settings.seed,
            )
            if settings.batch_size is not None
            else None
        )
        self.optimizer = torch.optim.Adam(
            network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        self.state = TrainState()
        self.best_weights = {k: v.detach().clone() for k, v in network.state_dict().items()}
        self.positions = inputs.train_positions()
        if not len(self.positions):
            raise MishonError("no training post has an in-vocabulary hashtag: nothing to learn")

    def resume(self) -> bool:
        """Load the last saved state from the output directory; False if there is none."""
        if self.out is None or not (self.out / STATE).is_file():
            return False
        try:
            saved = json.loads((self.out / STATE).read_text("utf-8"))
            self.network.load_state_dict(load_file(str(self.out / LAST_WEIGHTS)))
            self.best_weights = load_file(str(self.out / BEST_WEIGHTS))
            self.optimizer.load_state_dict(load_optimizer_state(self.out / OPTIMIZER))
            generators = load_file(str(self.out / RNG))
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise MishonError(
                f"cannot resume from {self.out} ({exc}): its checkpoint is damaged; "
                "train again into a new --out"
            ) from None
        torch.set_rng_state(generators["torch"])
        if "cuda" in generators and self.inputs.device.type == "cuda":
            torch.cuda.set_rng_state(generators["cuda"], self.inputs.device)
        self.state = TrainState(**saved)
        if self.state.stopped == "epochs" and self.state.epoch < self.settings.epochs:
            self.state.stopped = None  # resumed with a higher epoch limit
        return True

    def fit(self, progress: ProgressFn | None = None, steps: StepFn | None = None) -> TrainState:
        """Train until `epochs`, early stopping, or a finished state; returns the final state.

        `progress` is told each epoch's figures, `steps` each mini-batch step."""
        s, state = self.settings, self.state
        has_valid = len(self.data.cases("valid")) > 0
        while state.stopped is None and state.epoch < s.epochs:
            started = time.perf_counter()
            self.network.train()
            if self.sampler is None:
                loss = self.full_batch_step()
            else:
                loss = self.mini_batch_epoch(state.epoch + 1, steps)
            state.epoch += 1
            row: dict[str, Any] = {"epoch": state.epoch, "loss": round(loss, 6)}
            last = state.epoch == s.epochs
            if state.epoch % s.eval_every == 0 or last:
                metrics = self.validate()
                if metrics is not None:
                    row.update({f"valid_{k}": round(v, 6) for k, v in metrics.items()})
                # without validation posts the last epoch's weights are kept; best_score
                # stays -1 (no score), never an epoch number shown as an F1
                if metrics is None or metrics["f1"] > state.best_score:
                    if metrics is not None:
                        state.best_score = metrics["f1"]
                    state.best_epoch, state.stale_epochs = state.epoch, 0
                    self.best_weights = {
                        k: v.detach().clone() for k, v in self.network.state_dict().items()
                    }
                else:
                    state.stale_epochs += s.eval_every
                    if has_valid and state.stale_epochs >= s.patience:
                        state.stopped = "patience"
            row["seconds"] = round(time.perf_counter() - started, 3)
            state.history.append(row)
            if "valid_f1" in row or last:
                if last and state.stopped is None:
                    state.stopped = "epochs"
                if self.processes.is_main:
                    self.save()
            if progress is not None:
                progress({**row, "best_epoch": state.best_epoch, "best": state.best_score})
        self.network.load_state_dict(self.best_weights)
        return state

    def full_batch_step(self) -> float:
        """One Adam step over the whole graph; its mean loss."""
        self.optimizer.zero_grad(set_to_none=True)
        label_scale, loss_positions = label_split(
            self.network, self.positions, self.inputs.num_posts
        )
        fused = self.network.encode(self.inputs, label_scale)
        loss = self.network.loss(fused, self.inputs, loss_positions, self.settings.loss_chunk)
        self.check_finite(loss)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def mini_batch_epoch(self, epoch: int, report: StepFn | None = None) -> float:
        """One pass over the epoch's loss posts in steps of `batch_size`; the mean loss.

        The label split and the order come from (seed, epoch), the same in every process;
        each process takes its slice of each step, and the gradients of all slices, summed
        and divided by the step's size, make the step's mean gradient in every process.
        """
        assert self.sampler is not None and self.settings.batch_size is not None
        processes, device = self.processes, self.inputs.device
        shared = torch.Generator().manual_seed(epoch_seed(self.settings.seed, epoch))
        torch.manual_seed(epoch_seed(self.settings.seed, epoch, processes.rank + 1))  # others
        dropout_seed = epoch_seed(self.settings.seed, epoch, 1 << 20)  # per post, all processes
        label_scale, loss_positions = label_split(
            self.network, self.positions, self.inputs.num_posts, shared
        )
        order = torch.randperm(len(loss_positions), generator=shared).to(device)
        parameters = list(self.network.parameters())
        chunk = self.settings.loss_chunk
        total = 0.0
        steps = loss_positions[order].split(self.settings.batch_size)
        for number, step in enumerate(steps, 1):
            self.optimizer.zero_grad(set_to_none=True)
            mine = step.tensor_split(processes.world_size)[processes.rank]
            summed = torch.zeros((), device=device)
            if len(mine):
                batch = self.sampler.sample(mine, epoch).to(device)
                fused = self.network.encode_sampled(
                    self.inputs, batch, label_scale, mine, dropout_seed
                )
                summed = self.network.summed_loss(fused, self.inputs, mine, chunk)
                (summed / len(step)).backward()
            summed = sum_gradients(processes, parameters, summed.detach())
            self.check_finite(summed)
            self.optimizer.step()
            total += summed.item()
            if report is not None:
                report(epoch, number, len(steps))
        return total / max(len(loss_positions), 1)

    def check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise MishonError(f"the loss became {loss.item()} at epoch {self.state.epoch + 1}")

    def validate(self) -> dict[str, float] | None:
        """Validation metrics, computed by process 0 and shared with the others."""
        processes, k = self.processes, self.settings.select_k
        metrics = None
        if processes.is_main:
            sampler = self.sampler if self.settings.validation == "sampled" else None
            batch_size = self.settings.batch_size or 4096
            metrics = validation_metrics(
                self.network, self.inputs, self.data, k, sampler, batch_size
            )
        if not processes.distributed:
            return metrics
        names = ("f1", "recall", "ndcg")
        sent = [1.0, *(metrics[n] for n in names)] if metrics else [0.0] * 4
        shared = broadcast_values(processes, sent, self.inputs.device)
        return dict(zip(names, shared[1:], strict=True)) if shared[0] else None

    def save(self) -> None:
        """Write best and last weights, optimiser, RNG state, counters and history as one set.

        Each file is first written as `.NAME.next`; `checkpoint.json` (their digests) is the
        commit point; then each takes its name. A kill before the commit leaves the previous
        set, one after it is completed by `recover_checkpoint`: resume always sees one epoch's
        files."""
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        for name, weights in (
            (BEST_WEIGHTS, self.best_weights),
            (LAST_WEIGHTS, self.network.state_dict()),
        ):
            with atomic_path(_next(self.out, name)) as tmp:
                save_file({k: v.contiguous().cpu() for k, v in weights.items()}, str(tmp))
        save_optimizer_state(self.optimizer.state_dict(), _next(self.out, OPTIMIZER))
        generators = {"torch": torch.get_rng_state()}
        if self.inputs.device.type == "cuda":
            generators["cuda"] = torch.cuda.get_rng_state(self.inputs.device)
        with atomic_path(_next(self.out, RNG)) as tmp:
            save_file(generators, str(tmp))
        write_history(self.state.history, _next(self.out, HISTORY))
        write_json(asdict(self.state), _next(self.out, STATE))
        files = {name: file_digest(_next(self.out, name)) for name in CHECKPOINT_FILES}
        write_json({"epoch": self.state.epoch, "files": files}, self.out / CHECKPOINT)
        for name in CHECKPOINT_FILES:  # committed: each takes its name
            os.replace(_next(self.out, name), self.out / name)


def _next(out: Path, name: str) -> Path:
    return pending_path(out / name)


def recover_checkpoint(out: Path, discard_uncommitted: bool = True) -> None:
    """Bring the run directory `out` to its last committed checkpoint: files written for it
    take their names, files of an uncommitted one are removed (only with
    `discard_uncommitted`: a reader leaves them to the training that may be writing them);
    raise MishonError where a checkpoint file does not match `checkpoint.json`."""
    for _attempt in (1, 2):  # a reader may meet a save half-way: look again once
        manifest, mismatch = _apply_checkpoint(out, discard_uncommitted)
        if mismatch is None:
            return
    raise MishonError(
        f"{out / str(mismatch)} does not match {out / CHECKPOINT} (epoch {manifest.get('epoch')}): "
        "it was changed or damaged after training; retrain the run"
    )


def _apply_checkpoint(out: Path, discard_uncommitted: bool) -> tuple[dict[str, Any], str | None]:
    """Roll the committed set forward; the manifest and the first file that does not match."""
    manifest_path = out / CHECKPOINT
    try:
        manifest = json.loads(manifest_path.read_text("utf-8")) if manifest_path.is_file() else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise MishonError(f"cannot read {manifest_path}: {exc}; retrain the run") from None
    committed = manifest.get("files", {})
    for name in CHECKPOINT_FILES:
        complete_pending(out / name, committed.get(name), discard_uncommitted)
    for name, expected in committed.items():
        path = out / name
        if not path.is_file() or file_digest(path) != expected:
            return manifest, name
    return manifest, None


def save_optimizer_state(state: dict[str, Any], path: Path) -> None:
    """An optimiser's state_dict as safetensors (no pickle): tensors by `state.<param>.<name>`,
    the parameter groups as JSON in the file's metadata."""
    tensors = {
        f"state.{index}.{name}": value.detach().cpu().contiguous()
        for index, entries in state["state"].items()
        for name, value in entries.items()
    }
    metadata = {"param_groups": json.dumps(state["param_groups"])}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_optimizer_state(path: Path) -> dict[str, Any]:
    """The state_dict written by `save_optimizer_state`."""
    with safe_open(str(path), framework="pt") as handle:
        groups = json.loads((handle.metadata() or {})["param_groups"])
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = handle.get_tensor(key)
    return {"state": state, "param_groups": groups}


def write_history(rows: list[dict[str, Any]], path: Path) -> None:
    """The per-epoch history as CSV (validation columns empty on epochs without validation)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
