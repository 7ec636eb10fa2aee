"""Tensors the network reads: unit features, users, the hashtag vocabulary, targets, adjacency.

Everything is indexed like the graph: modality node i and row i of each feature tensor are
post i of the split's post list (`HeteroGraph.post_ids`). Only training hashtags build the
vocabulary and the targets.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mishon.data.split_data import SplitData
from mishon.errors import MishonError
from mishon.features.store import MANIFEST, FeatureStore, modality_dir
from mishon.graph.build import HeteroGraph
from mishon.graph.pooled import iter_npy_rows

EdgeType = tuple[str, str, str]


@dataclass
class Vocabulary:
    """The hashtags the output layer scores: training hashtags used at least `min_count` times."""

    tags: list[str]

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tags)}

    def __len__(self) -> int:
        return len(self.tags)

    @classmethod
    def from_training(cls, hashtags: list[list[str]], min_count: int) -> Vocabulary:
        counts = Counter(t for tags in hashtags for t in tags)
        kept = [t for t, c in counts.items() if c >= min_count]
        if not kept:
            raise MishonError(
                f"no training hashtag is used {min_count} times: lower model.min_count"
            )
        return cls(sorted(kept, key=lambda t: (-counts[t], t)))


@dataclass
class ModalityUnits:
    """A modality's units for every post of the split: float16 [N, L, D] and bool [N, L]."""

    units: torch.Tensor
    mask: torch.Tensor


def read_units(
    dataset: Path, modality: str, rows: np.ndarray, post_ids: list[str]
) -> ModalityUnits:
    """The stored units of `modality` for dataset rows `rows` (sorted), standardised, float16.

    float16 halves the resident size (the largest input at scale); the encoder computes in
    float32 one chunk of posts at a time.
    """
    store = FeatureStore.open(modality_dir(dataset, modality))
    if store.post_ids != post_ids:
        raise MishonError(
            f"{store.folder} does not match posts.parquet: rerun `mishon extract --overwrite`"
        )
    spec = store.spec
    units = torch.empty((len(rows), spec.units, spec.dim), dtype=torch.float16)
    mask = torch.empty((len(rows), spec.units), dtype=torch.bool)
    position = 0
    for (_, values), (_, present) in zip(
        iter_npy_rows(store.folder / "values.npy", rows),
        iter_npy_rows(store.folder / "mask.npy", rows),
        strict=True,
    ):
        block = normalise_units(torch.from_numpy(values.astype(np.float32)))
        if not torch.isfinite(block).all():
            raise MishonError(
                f"{store.folder / 'values.npy'} holds values that are not finite: extract "
                f"again with `mishon extract {dataset} --overwrite`"
            )
        units[position : position + len(values)] = block.to(torch.float16)
        mask[position : position + len(values)] = torch.from_numpy(present.astype(bool))
        position += len(values)
    return ModalityUnits(units, mask)


def normalise_units(units: torch.Tensor) -> torch.Tensor:
    """Each unit vector standardised over its features (a LayerNorm without parameters).

    Extractors differ in scale (CNN activations are all positive, token embeddings are not);
    done once at load rather than on every forward pass (in place).
    """
    mean = units.mean(dim=-1, keepdim=True)
    variance = units.var(dim=-1, unbiased=False, keepdim=True)
    return units.sub_(mean).div_(torch.sqrt(variance + 1e-5))


@dataclass
class Targets:
    """Per post, its in-vocabulary hashtags as a CSR list with weights summing to 1."""

    indptr: torch.Tensor  # int64 [N + 1]
    indices: torch.Tensor  # int64 [nnz]
    weights: torch.Tensor  # float32 [nnz]

    @classmethod
    def build(cls, hashtags: list[list[str]], vocabulary: Vocabulary) -> Targets:
        indptr, indices = [0], []
        for tags in hashtags:
            known = sorted({vocabulary.index[t] for t in tags if t in vocabulary.index})
            indices.extend(known)
            indptr.append(len(indices))
        pointer = torch.tensor(indptr, dtype=torch.int64)
        sizes = (pointer[1:] - pointer[:-1]).float()
        weights = torch.repeat_interleave(1.0 / sizes.clamp_min(1), pointer[1:] - pointer[:-1])
        return cls(pointer, torch.tensor(indices, dtype=torch.int64), weights)

    def to(self, device: torch.device) -> Targets:
        return Targets(self.indptr.to(device), self.indices.to(device), self.weights.to(device))

    def sizes(self) -> torch.Tensor:
        """Number of targets of each post."""
        return self.indptr[1:] - self.indptr[:-1]

    def has_target(self) -> torch.Tensor:
        return self.sizes() > 0

    def rows(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row within `positions`, vocabulary index, weight) of the targets of those posts."""
        starts, ends = self.indptr[positions], self.indptr[positions + 1]
        sizes = ends - starts
        device = positions.device
        row = torch.repeat_interleave(torch.arange(len(positions), device=device), sizes)
        offsets = torch.arange(int(sizes.sum()), device=device) - torch.repeat_interleave(
            torch.cumsum(sizes, 0) - sizes, sizes
        )
        entries = torch.repeat_interleave(starts, sizes) + offsets
        return row, self.indices[entries], self.weights[entries]


def adjacency(index: np.ndarray, n_src: int, n_dst: int) -> torch.Tensor:
    """The transposed (destination-major) CSR adjacency of coalesced edges, values 1.

    SAGEConv aggregates a sparse adjacency by rows, so row = destination; ones make the mean the
    plain neighbour mean (the edge-index result), whatever the stored similarity weights.
    """
    dst = torch.from_numpy(np.ascontiguousarray(index[1]))
    src = torch.from_numpy(np.ascontiguousarray(index[0]))
    order = torch.argsort(dst * max(n_src, 1) + src)
    dst, src = dst[order], src[order]
    crow = torch.zeros(n_dst + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(dst, minlength=n_dst), 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and tested
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow, src, torch.ones(len(src)), size=(n_dst, n_src), check_invariants=False
        )


@dataclass
class ModelInputs:
    """What one forward pass over the whole graph needs."""

    modalities: dict[str, ModalityUnits]
    post_user: torch.Tensor  # int64 [N]
    user_trained: torch.Tensor  # bool [U]: the user has a training post
    num_users: int
    adjacency: dict[EdgeType, torch.Tensor]
    vocabulary: Vocabulary
    targets: Targets

    @property
    def num_posts(self) -> int:
        return len(self.post_user)

    @property
    def device(self) -> torch.device:
        return self.post_user.device

    def to(self, device: torch.device) -> ModelInputs:
        """These inputs on `device` (self when they are there already)."""
        if device == self.device:
            return self
        return ModelInputs(
            modalities={
                m: ModalityUnits(u.units.to(device), u.mask.to(device))
                for m, u in self.modalities.items()
            },
            post_user=self.post_user.to(device),
            user_trained=self.user_trained.to(device),
            num_users=self.num_users,
            adjacency={t: a.to(device) for t, a in self.adjacency.items()},
            vocabulary=self.vocabulary,
            targets=self.targets.to(device),
        )

    def train_positions(self) -> torch.Tensor:
        """Training posts with at least one in-vocabulary hashtag: the posts of the loss."""
        return torch.nonzero(self.targets.has_target()).flatten()


def build_inputs(
    data: SplitData, graph: HeteroGraph, min_count: int, vocabulary: Vocabulary | None = None
) -> ModelInputs:
    """Assemble the inputs of `graph` (built from `data`); a saved vocabulary may be given."""
    post_ids = data.posts["post_id"].astype(str).tolist()
    if post_ids != graph.post_ids:
        raise MishonError(
            "the graph was built from other posts or another split: rebuild it for "
            f"{data.dataset} split {data.split_name!r}"
        )
    hashtags = data.posts["hashtags"].tolist()
    is_train = data.is_train
    if vocabulary is None:
        vocabulary = Vocabulary.from_training(
            [tags for tags, train in zip(hashtags, is_train, strict=True) if train], min_count
        )
    modalities = {}
    for modality in graph.modalities:
        if not (modality_dir(data.dataset, modality) / MANIFEST).is_file():
            raise MishonError(f"the graph has {modality} nodes but {data.dataset} has no store")
        modalities[modality] = read_units(data.dataset, modality, data.rows, data.all_post_ids)
    post_user = torch.from_numpy(graph.post_user.astype(np.int64))
    num_users = graph.num_nodes["user"]
    trained = torch.zeros(num_users, dtype=torch.bool)
    trained[post_user[torch.from_numpy(np.array(is_train, dtype=bool))]] = True
    matrices = {
        edge_type: adjacency(index, graph.num_nodes[edge_type[0]], graph.num_nodes[edge_type[2]])
        for edge_type, (index, _) in graph.edges.items()
    }
    return ModelInputs(
        modalities=modalities,
        post_user=post_user,
        user_trained=trained,
        num_users=num_users,
        adjacency=matrices,
        vocabulary=vocabulary,
        # only training posts get targets: nothing downstream can read a test hashtag
        targets=Targets.build(
            [tags if train else [] for tags, train in zip(hashtags, is_train, strict=True)],
            vocabulary,
        ),
    )
