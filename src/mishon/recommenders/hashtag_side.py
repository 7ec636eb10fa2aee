"""The inductive hashtag side: an output row for every known hashtag, not only the vocabulary's.

The trained network scores the hashtags of its vocabulary with learned output rows. A hashtag
outside it (born after training, or used too rarely to enter it) gets a row from what is known
of it when a post is ranked:

- the mean of the unit fused vectors of the known posts that carry it (the model's space);
- how many known posts carry it (log 1 + count), for its bias;
- optionally its name (`#sunsetvibes` -> "sunset vibes") through the run's textual extractor
  (`recommenders/hashtag_names.py`).

`HashtagEncoder` maps these to a row and a bias. `fit_hashtag_encoder` trains it on the
training posts with the network frozen, so that for training hashtags it agrees with the learned
rows and, with a random `holdout` share of the vocabulary's rows replaced by its own in each
step, the softmax over the vocabulary still ranks the posts' hashtags (cross-entropy). To mirror
ranking time, where a new hashtag's carriers never showed it to the network, the fit encodes the
training posts with half of them showing their hashtags (as a training epoch) and reads only the
hidden half: one quarter gives the hashtags' mean vectors, the other is the loss posts. A new
hashtag is known by few posts and most never recur, so a held-out row is made from 1, 2, 4 or
all of its posts, and the training hashtags outside the vocabulary (used once) join the softmax
with the encoder's rows as distractors.

`HashtagSide` holds the rows of the hashtags outside the vocabulary that are known at the moment
(`KnownPosts`) and gives their probabilities in the network's softmax over every known hashtag
(`outside_probabilities`): MISHON live's evidence `model_outside`, beside `model` (the softmax
over the vocabulary alone, unchanged), so that the weight selection decides what they are worth.

`run_hashtag_encoder` fits a run's encoder once and keeps it in the run directory
(`hashtag-side-KEY.safetensors`, KEY from the run's fingerprint and the settings), so that later
evaluations and every start of the service load it instead of fitting it again.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors.torch import save_file
from torch import nn

from mishon.config import Settings
from mishon.data.store import atomic_path
from mishon.errors import MishonError
from mishon.lineage import digest
from mishon.model.inference import FrozenLinear, label_split
from mishon.model.inputs import ModelInputs
from mishon.model.network import MishonNetwork
from mishon.recommenders.evidence import KnownPosts
from mishon.train.run import TrainedRun, read_weights

NameEmbedder = Callable[[list[str]], np.ndarray]  # hashtags -> [H, D] unit name vectors
FEW_POSTS = (1, 2, 4)  # posts a held-out row is made from in fitting, besides all of them


class HashtagSideSettings(Settings):
    """How the inductive hashtag side is fitted (docs/design.md, "The inductive hashtag side")."""

    names: bool = Field(
        False, description="add the hashtag's segmented name through the textual extractor"
    )
    holdout: float = Field(
        0.2, gt=0.0, lt=1.0, description="share of the vocabulary's rows replaced in each step"
    )
    steps: int = Field(300, ge=0, description="full-batch Adam steps")
    lr: float = Field(0.01, gt=0.0, description="Adam learning rate")
    agreement: float = Field(
        1.0, ge=0.0, description="weight of the squared distance to the learned rows"
    )
    seed: int = Field(0, description="seed of the label split, the quarters and the holdouts")


class HashtagEncoder(nn.Module):
    """(mean known-post vector [H, d], log-count [H], name vectors [H, D] or None) -> (rows
    [H, d], biases [H]). Linear, so that it extrapolates to hashtags with one or two posts."""

    def __init__(self, dim: int, name_dim: int = 0) -> None:
        super().__init__()
        self.from_posts = nn.Linear(dim, dim + 1)
        self.from_count = nn.Linear(1, dim + 1, bias=False)
        self.from_name = nn.Linear(name_dim, dim + 1, bias=False) if name_dim else None

    @torch.no_grad()
    def start_as_mean(self, scale: float) -> None:
        """Start from row = `scale` x the mean known-post vector, bias 0: the known posts'
        centroid is already a good row (a hashtag's posts sit where its row points)."""
        dim = self.from_posts.in_features
        self.from_posts.weight.zero_()
        self.from_posts.weight[:dim].copy_(scale * torch.eye(dim))
        self.from_posts.bias.zero_()
        self.from_count.weight.zero_()
        if self.from_name is not None:
            self.from_name.weight.zero_()

    def forward(
        self, posts: torch.Tensor, log_count: torch.Tensor, names: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.from_posts(posts) + self.from_count(log_count[:, None])
        if self.from_name is not None and names is not None:
            out = out + self.from_name(names)
        return out[:, :-1], out[:, -1]


def hashtag_means(
    unit_fused: torch.Tensor,
    posts: torch.Tensor,
    inputs: ModelInputs,
    at_most: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per vocabulary hashtag, the mean of `unit_fused` over the `posts` carrying it [V, d] and
    how many there are [V]; with `at_most`, over that many of them at most, drawn at random."""
    row, column, _ = inputs.targets.rows(posts)
    size = len(inputs.vocabulary)
    if at_most is not None:
        shuffled = torch.randperm(len(column), generator=generator)
        order = shuffled[torch.argsort(column[shuffled], stable=True)]  # by hashtag, shuffled
        sizes = torch.bincount(column, minlength=size)
        starts = torch.cumsum(sizes, 0) - sizes
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order)) - starts[column[order]]
        kept = rank < at_most
        row, column = row[kept], column[kept]
    sums = torch.zeros(size, unit_fused.shape[1]).index_add_(0, column, unit_fused[posts[row]])
    counts = torch.bincount(column, minlength=size).float()
    return sums / counts.clamp_min(1)[:, None], counts


def fit_hashtag_encoder(
    network: MishonNetwork,
    inputs: ModelInputs,
    hashtags: Sequence[Sequence[str]],
    train_positions: np.ndarray,
    settings: HashtagSideSettings,
    names: NameEmbedder | None = None,
) -> HashtagEncoder:
    """A `HashtagEncoder` fitted on the training posts at `train_positions` (network frozen;
    see the module); `hashtags`: every post's hashtags (the vocabulary's and the others);
    `names` embeds hashtag names, if they are used."""
    generator = torch.Generator().manual_seed(settings.seed)
    positions = torch.as_tensor(np.asarray(train_positions, dtype=np.int64))
    positions = positions[inputs.targets.has_target()[positions].cpu()]
    was_training = network.training
    network.eval()
    with torch.no_grad():
        label_scale, hidden = label_split(network, positions, inputs.num_posts, generator)
        fused = network.encode(inputs, label_scale).cpu()
        output_rows = network.output.weight.detach().cpu()
        output_bias = network.output.bias.detach().cpu()
    network.train(was_training)
    hidden = hidden[torch.randperm(len(hidden), generator=generator)]
    mean_posts, loss_posts = hidden[: len(hidden) // 2], hidden[len(hidden) // 2 :]
    unit = F.normalize(fused, dim=1)
    means, counts = hashtag_means(unit, mean_posts, inputs)
    log_count = torch.log1p(counts)
    has_posts = counts > 0  # only these can be held out: a known hashtag has a post
    # a hashtag outside the vocabulary is known by few posts: held-out rows are made from the
    # means of 1, 2, 4 or all of their posts, one drawn per hashtag and step
    few = [hashtag_means(unit, mean_posts, inputs, m, generator) for m in FEW_POSTS]
    few_means = torch.stack([m for m, _ in few] + [means])
    few_log_counts = torch.stack([torch.log1p(c) for _, c in few] + [log_count])
    # the training hashtags outside the vocabulary (used too rarely): as at ranking time, rows
    # of hashtags known by a post or two that the loss posts mostly do not carry
    others, others_means, others_log_count = _outside_means(unit, mean_posts, hashtags, inputs)
    name_vectors = other_names = None
    if names is not None:
        name_vectors = torch.from_numpy(names(inputs.vocabulary.tags))
        other_names = torch.from_numpy(names(others))
    row, column, target = inputs.targets.rows(loss_posts)
    vectors = fused[loss_posts]
    encoder = HashtagEncoder(fused.shape[1], 0 if name_vectors is None else name_vectors.shape[1])
    # least-squares scale from the mean vectors to the learned rows
    overlap = (means[has_posts] * output_rows[has_posts]).sum()
    encoder.start_as_mean(float(overlap / means[has_posts].pow(2).sum().clamp_min(1e-12)))
    optimiser = torch.optim.Adam(encoder.parameters(), lr=settings.lr)
    scale = output_rows.pow(2).sum(dim=1).mean()
    for _ in range(settings.steps):
        with torch.enable_grad():  # also when called under no_grad
            rows, biases = encoder(means, log_count, name_vectors)
            held = has_posts & (torch.rand(len(has_posts), generator=generator) < settings.holdout)
            level = torch.randint(len(few_means), (len(has_posts),), generator=generator)
            index = torch.arange(len(has_posts))
            few_rows, few_biases = encoder(
                few_means[level, index], few_log_counts[level, index], name_vectors
            )
            other_rows, other_biases = encoder(others_means, others_log_count, other_names)
            weight = torch.cat([torch.where(held[:, None], few_rows, output_rows), other_rows])
            bias = torch.cat([torch.where(held, few_biases, output_bias), other_biases])
            log_probabilities = F.log_softmax(vectors @ weight.T + bias, dim=1)
            cross_entropy = -(target * log_probabilities[row, column]).sum() / len(loss_posts)
            distance = (rows - output_rows).pow(2).sum(dim=1) / scale
            distance = distance + (biases - output_bias).pow(2)
            loss = cross_entropy + settings.agreement * distance[has_posts].mean()
            optimiser.zero_grad()
            loss.backward()
        optimiser.step()
    return encoder.eval()


def check_names(settings: HashtagSideSettings, names: NameEmbedder | None) -> None:
    """Refuse settings that use hashtag names without an embedder for them."""
    if settings.names and names is None:
        raise MishonError("the hashtag side's names need a name embedder (HashtagNames)")


def hashtag_encoder_path(run: TrainedRun, settings: HashtagSideSettings) -> Path:
    """Where the run keeps the encoder fitted with `settings` (its key changes with the run's
    weights, lineage and the settings, so a stale file is never read)."""
    key = digest([run.fingerprint, settings.model_dump(mode="json")])
    return run.path / f"hashtag-side-{key}.safetensors"


def run_hashtag_encoder(
    run: TrainedRun,
    settings: HashtagSideSettings,
    names: NameEmbedder | None = None,
    keep_in: Path | None = None,
) -> tuple[HashtagEncoder, bool]:
    """The run's `HashtagEncoder` for `settings`, and whether it was fitted now: loaded from the
    run directory (or `keep_in`) when an earlier call kept it there, else fitted on the run's
    training posts and kept in `keep_in`, else in the run directory (a file that cannot be read
    is fitted again and replaced). The service passes its state folder: it never writes into a
    run directory."""
    check_names(settings, names)
    path = hashtag_encoder_path(run, settings)
    candidates = [path] if keep_in is None else [path, keep_in / path.name]
    dim = run.network.settings.hidden
    for kept in candidates:
        if not kept.is_file():
            continue
        try:
            weights = read_weights(kept)
            name_weight = weights.get("from_name.weight")
            encoder = HashtagEncoder(dim, 0 if name_weight is None else name_weight.shape[1])
            encoder.load_state_dict(weights)
            return encoder.eval(), False
        except (MishonError, RuntimeError):
            pass  # damaged or from another version: fitted again below
    hashtags = run.data.posts["hashtags"].to_numpy()
    train = np.flatnonzero(run.data.is_train)
    encoder = fit_hashtag_encoder(run.network, run.inputs, hashtags, train, settings, names)
    state = {k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()}
    path = candidates[-1]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(state, str(tmp))
    except OSError as exc:  # a read-only run still serves; the next start fits it again
        warnings.warn(f"cannot keep the fitted hashtag side in {path} ({exc})", stacklevel=2)
    return encoder, True


def _outside_means(
    unit_fused: torch.Tensor,
    posts: torch.Tensor,
    hashtags: Sequence[Sequence[str]],
    inputs: ModelInputs,
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The hashtags of `posts` outside the vocabulary, the mean of their carriers' vectors and
    log(1 + their count)."""
    carriers: dict[str, list[int]] = {}
    for post in posts.tolist():
        for tag in hashtags[post]:
            if tag not in inputs.vocabulary.index:
                carriers.setdefault(tag, []).append(post)
    tags = list(carriers)
    means = torch.zeros(len(tags), unit_fused.shape[1])
    for i, tag in enumerate(tags):
        means[i] = unit_fused[carriers[tag]].mean(dim=0)
    counts = torch.tensor([len(carriers[t]) for t in tags], dtype=torch.float32)
    return tags, means, torch.log1p(counts)


class HashtagSide:
    """Rows of the known hashtags outside the network's vocabulary, kept current with the
    known posts, and the network's probabilities over every known hashtag.

    A revealed post adds its vector to the running sums of its hashtags; only the rows of the
    hashtags that changed are encoded again (`invalidate`, after the network encoded the graph
    again, recomputes every sum).
    """

    def __init__(
        self,
        network: MishonNetwork,
        vocabulary: list[str],
        encoder: HashtagEncoder,
        known: KnownPosts,
        names: NameEmbedder | None = None,
    ) -> None:
        self.network = network
        self.vocabulary = vocabulary
        self.in_vocabulary = set(vocabulary)
        self.encoder = encoder
        self.known = known
        self.names = names if encoder.from_name is not None else None
        dim = network.settings.hidden
        self.tags: list[str] = []  # the hashtags outside the vocabulary, in order of arrival
        self.column: dict[str, int] = {}
        self.carriers: list[list[int]] = []  # per column, its known rows
        self.sums = np.zeros((0, dim), dtype=np.float32)  # of the placed carriers' vectors
        self.placed = np.zeros(0, dtype=np.float32)  # how many carriers have vectors
        self.name_vectors: list[np.ndarray] = []
        self.rows_t = torch.zeros(dim, 0)  # the rows, transposed (see `FrozenLinear`)
        self.biases = torch.zeros(0)
        self.changed: set[int] = set()

    def reveal(self, row: int, hashtags: list[str] | tuple[str, ...]) -> None:
        """Known row `row` carries `hashtags`: those outside the vocabulary get (new) rows."""
        placed = bool(self.known.placed[row])
        for tag in hashtags:
            if tag in self.in_vocabulary:
                continue
            column = self.column.get(tag)
            if column is None:
                column = self._add(tag)
            self.carriers[column].append(row)
            if placed:
                self.sums[column] += self.known.fused[row]
                self.placed[column] += 1
            self.changed.add(column)

    def _add(self, tag: str) -> int:
        column = len(self.tags)
        if column == len(self.sums):  # room for more: a copy every doubling, not per hashtag
            more = max(1024, column)
            self.sums = np.concatenate([self.sums, np.zeros((more, self.sums.shape[1]), "f4")])
            self.placed = np.concatenate([self.placed, np.zeros(more, "f4")])
            self.rows_t = torch.cat([self.rows_t, torch.zeros(self.rows_t.shape[0], more)], 1)
            self.biases = torch.cat([self.biases, torch.zeros(more)])
        self.tags.append(tag)
        self.column[tag] = column
        self.carriers.append([])
        return column

    def invalidate(self) -> None:
        """The known posts' vectors changed (the network encoded the graph again)."""
        for column, rows in enumerate(self.carriers):
            placed = [r for r in rows if self.known.placed[r]]
            self.sums[column] = self.known.fused[placed].sum(axis=0) if placed else 0.0
            self.placed[column] = len(placed)
        self.changed = set(range(len(self.tags)))

    def _update(self) -> None:
        if not self.changed:
            return
        columns = np.array(sorted(self.changed), dtype=np.int64)
        names = None
        if self.names is not None:
            missing = self.tags[len(self.name_vectors) :]
            if missing:
                self.name_vectors += list(self.names(missing))
            names = torch.from_numpy(np.stack([self.name_vectors[c] for c in columns]))
        means = self.sums[columns] / np.maximum(self.placed[columns], 1.0)[:, None]
        counts = np.array([len(self.carriers[c]) for c in columns], dtype=np.float32)
        with torch.no_grad():
            rows, biases = self.encoder(
                torch.from_numpy(means), torch.from_numpy(np.log1p(counts)), names
            )
        index = torch.from_numpy(columns)
        self.rows_t[:, index], self.biases[index] = rows.T, biases
        self.changed.clear()

    @cached_property
    def output(self) -> FrozenLinear:
        """The vocabulary's logits where `outside_probabilities` is not given them (made on
        first use: MISHON live passes its own)."""
        return FrozenLinear.of(self.network)

    def outside_probabilities(
        self, fused: torch.Tensor, count: int, scores: torch.Tensor | None = None
    ) -> list[dict[str, float]]:
        """Per row of `fused` [B, d], the `count` most probable known hashtags outside the
        vocabulary, with their probabilities in the softmax over all known hashtags
        (`scores`: the network's logits of `fused`, if already computed)."""
        self._update()
        outside_count = len(self.tags)
        with torch.no_grad():
            fused = fused.float().to(self.network.output.weight.device)
            if scores is None:
                scores = self.output(fused)
            rows_t, biases = self.rows_t[:, :outside_count], self.biases[:outside_count]
            outside = torch.addmm(biases, fused.cpu(), rows_t)
            # log of the softmax's denominator over the vocabulary and these rows together
            total = torch.logaddexp(scores.cpu().logsumexp(dim=1), outside.logsumexp(dim=1))
            best, indices = outside.topk(min(count, outside_count), dim=1)
            values = (best - total[:, None]).exp()
        return [
            {self.tags[j]: v for j, v in zip(index.tolist(), value.tolist(), strict=True)}
            for index, value in zip(indices, values, strict=True)
        ]
