"""Settings for every stage, as pydantic models: one place that documents each key.

Each field carries its type, default and a one-line description; the command line builds these
models from its options, and later stages load them from a YAML file (`mishon ... --config`).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from mishon.errors import MishonError

# stream: the network encodes the graph again after this many revealed posts (1: after each,
# exact). The evidence of MISHON live and the baselines reads each revealed post at once
# whatever this is; on the demo corpus 256 gives the network F1@5 0.280 against 0.278 exact,
# in 5.5 s against 21 s (docs/benchmarks.md, "The demo").
DEFAULT_REFRESH = 256


class Settings(BaseModel):
    """Base for all settings: unknown keys are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


S = TypeVar("S", bound=Settings)

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _device_name(name: str) -> str:
    if not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {name!r}")
    return name


DeviceName = Annotated[str, AfterValidator(_device_name)]


MAPPABLE_FIELDS: tuple[str, ...] = (
    "post_id",
    "user_id",
    "caption",
    "hashtags",
    "video",
    "created_at",
    "sound",  # the sound's title or id (data.sounds)
    "duration",  # the clip's length: seconds or mm:ss
    "likes",  # the engagement counts (data.schema.ENGAGEMENT_FIELDS; tested equal)
    "comments",
    "shares",
    "views",
    "followers",  # the author's counters (data.schema.USER_COUNTER_FIELDS; tested equal)
    "total_likes",
    "total_posts",
    "split",
)


class ImportSettings(Settings):
    """How `mishon data import` reads a source table."""

    format: Literal["csv", "tsv", "jsonl", "howyoutagtweets"] = Field(
        description="source layout: a delimited table, JSON lines, or the #HowYouTagTweets folder"
    )
    mapping: dict[str, str] = Field(
        default_factory=dict,
        description="dataset field -> source column (a column named like a field maps itself); "
        "user_id and one of hashtags/caption needed",
    )
    skip_bad: bool = Field(False, description="import good rows, list bad ones, instead of failing")
    hashtag_separator: str | None = Field(
        None,
        min_length=1,
        description="separator inside a hashtag string; None splits on , ; | and spaces",
    )
    media: Literal["copy", "hardlink", "symlink"] = Field(
        "copy", description="how video files enter the dataset's media/ folder"
    )
    encoding: str = Field("utf-8-sig", description="text encoding of the source (BOM tolerated)")
    allow_outside_media: bool = Field(
        False,
        description="accept video paths that resolve outside the source's folder "
        "(absolute, '..' or symlinks leading out)",
    )
    original_sound_titles: list[str] = Field(
        default_factory=list,
        description="sound titles that mean the author's own audio, beside the built-in ones "
        "(data.sounds): each becomes one sound per author",
    )

    @field_validator("mapping")
    @classmethod
    def _known_fields(cls, mapping: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(mapping) - set(MAPPABLE_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; mappable: {', '.join(MAPPABLE_FIELDS)}")
        return mapping


class SplitSettings(Settings):
    """How `mishon data split` assigns posts to train / valid / test (DESIGN section 2)."""

    strategy: Literal["temporal", "random", "given", "cold-start"] | None = Field(
        None, description="None picks given, then temporal (created_at), then random"
    )
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of posts for validation")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of posts for test")
    cold_user_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="cold-start: share of users held out of training entirely"
    )
    cold_base: Literal["temporal", "random", "given"] | None = Field(
        None, description="cold-start: the split warm users follow; None picks as for strategy"
    )
    seed: int = Field(0, description="random seed (random strategy, cold-start user choice)")

    @model_validator(mode="after")
    def _fractions(self) -> SplitSettings:
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("valid_fraction + test_fraction must leave posts for training")
        return self


class SynthSettings(Settings):
    """The synthetic micro-video corpus (`mishon data synth`); see docs/synthetic.md."""

    users: int = Field(60, ge=4, description="number of users")
    posts: int = Field(600, ge=8, description="number of posts (each with a video file)")
    seed: int = Field(0, description="random seed: the same seed gives the same corpus")
    topics: int = Field(8, ge=2, le=24, description="latent topics shared by the three modalities")
    duration_s: float = Field(3.0, gt=0.5, le=30.0, description="clip length in seconds")
    fps: int = Field(10, ge=2, le=30, description="video frame rate")
    frame_size: int = Field(96, ge=16, le=512, description="frame width and height in pixels")
    sample_rate: int = Field(16000, description="audio sample rate in Hz")
    start: datetime = Field(
        datetime(2026, 1, 1, tzinfo=UTC), description="timestamp of the corpus's first day"
    )
    days: int = Field(120, ge=7, description="time span the posts cover")
    group_size: int = Field(5, ge=2, description="users per hashtag-habit group")
    popular_fraction: float = Field(
        0.06, gt=0.0, lt=0.5, description="share of users who are popular influencers"
    )
    late_user_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="share of users who join in the last third of the span"
    )
    visual_fidelity: float = Field(
        0.65, ge=0.0, le=1.0, description="chance the frames show the post's own topic"
    )
    acoustic_fidelity: float = Field(
        0.55, ge=0.0, le=1.0, description="chance the sound follows the post's own topic"
    )
    textual_fidelity: float = Field(
        0.6, ge=0.0, le=1.0, description="chance the caption is drawn from the post's own topic"
    )
    no_sound_fraction: float = Field(0.1, ge=0.0, le=1.0, description="posts with no audio track")
    no_caption_fraction: float = Field(0.1, ge=0.0, le=1.0, description="posts with no caption")
    unlabeled_fraction: float = Field(
        0.03, ge=0.0, le=1.0, description="posts with no hashtag at all (legitimately unlabeled)"
    )
    workers: int = Field(2, ge=1, description="processes that render and encode the videos")

    @field_validator("frame_size")
    @classmethod
    def _even(cls, size: int) -> int:
        if size % 2:
            raise ValueError("frame_size must be even (H.264 with 4:2:0 chroma)")
        return size

    @field_validator("sample_rate")
    @classmethod
    def _aac_rate(cls, rate: int) -> int:
        allowed = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
        if rate not in allowed:
            raise ValueError(f"sample_rate must be one AAC supports: {allowed}")
        return rate

    @model_validator(mode="after")
    def _enough_posts(self) -> SynthSettings:
        if self.posts < self.users:
            raise ValueError("posts must be at least users (every user posts at least once)")
        return self


def load_settings(
    model: type[S],
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    assignments: list[str] | None = None,
    env_prefix: str | None = None,
) -> S:
    """Settings from an optional YAML file, then environment variables (with `env_prefix`,
    see `environment_settings`), then `overrides`, then `assignments`.

    `overrides` are nested like the settings (`{"train": {"epochs": 5}}`); None in them means
    "not given" (a command-line option left unset). `assignments` are `--set` strings such as
    `train.epochs=5` (`parse_assignments`), where `null` does set None. Both are merged key by
    key, so overriding one key keeps the file's others. Raises MishonError naming the file
    and key on a bad file or value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text("utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise MishonError(f"cannot read config {path}: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise MishonError(f"config {path}: expected a mapping of keys to values")
        data = loaded or {}
    data = merge_settings(_nested_defaults(model), data)
    if env_prefix is not None:
        data = merge_settings(data, environment_settings(model, env_prefix))
    data = merge_settings(data, _given(overrides or {}))
    data = merge_settings(data, parse_assignments(assignments))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        source = f" (config {path})" if path else ""
        lines = [
            f"  {'.'.join(map(str, e['loc'])) or '(settings)'}: {e['msg']}" for e in exc.errors()
        ]
        raise MishonError(f"invalid {model.__name__}{source}:\n" + "\n".join(lines)) from None


def merge_settings(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, nested mappings key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


def _nested_defaults(model: type[Settings]) -> dict[str, Any]:
    """The defaults of `model`'s nested settings, so an override of one nested key keeps the
    others (`--visual-units 4` keeps the visual extractor's name)."""
    defaults = {}
    for name, info in model.model_fields.items():
        if info.is_required():
            continue
        default = info.get_default(call_default_factory=True)
        if isinstance(default, Settings):
            defaults[name] = default.model_dump()
    return defaults


def environment_settings(
    model: type[Settings], prefix: str, environ: dict[str, str] | None = None
) -> dict[str, Any]:
    """The keys of `model` set in the environment: `PREFIX` + the key in capitals, nested keys
    joined by `__` (`MISHON_PORT=8001`, `MISHON_EVIDENCE__INDEX__EXACT_MAX=1000`). Values are
    read as YAML (`true`, `3`, `[mp4, webm]`), except for text keys, taken as written."""
    environ = dict(os.environ) if environ is None else environ
    found: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        nested = info.annotation if isinstance(info.annotation, type) else None
        if nested is not None and issubclass(nested, Settings):
            inner = environment_settings(nested, f"{variable}__", environ)
            if inner:
                found[name] = inner
            continue
        if variable not in environ:
            continue
        text = environ[variable]
        if _is_text(info.annotation):
            found[name] = text
            continue
        try:
            found[name] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            found[name] = text  # refused by validation, which names the key
    return found


def _is_text(annotation: Any) -> bool:
    """Whether a field holds text (str, a secret, a path; or None)."""
    options = getattr(annotation, "__args__", (annotation,))
    return any(option in (str, SecretStr, Path) for option in options) and not any(
        option in (int, float, bool) for option in options
    )


def _given(overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides without the unset (None) values, at every depth."""
    return {
        key: _given(value) if isinstance(value, dict) else value
        for key, value in overrides.items()
        if value is not None
    }


def parse_assignments(assignments: list[str] | None) -> dict[str, Any]:
    """`KEY.SUBKEY=VALUE` strings as nested overrides; each value is read as YAML.

    `train.epochs=5` -> {"train": {"epochs": 5}}; `model.graph=false`, `split=random`,
    `graph.textual.threshold=0.3`, `train.threads=null` (sets None).
    """
    nested: dict[str, Any] = {}
    for text in assignments or []:
        key, sep, raw = text.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise MishonError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise MishonError(f"--set {text!r}: cannot read the value ({exc})") from None
        node = nested
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MishonError(f"--set {text!r}: {part} is given both a value and keys")
            node = child
        node[path[-1]] = value
    return nested


class ExtractorSettings(Settings):
    """One modality's extractor in `mishon extract`."""

    name: str | None = Field(description="registered extractor name; None leaves the modality out")
    model: str | None = Field(
        None, description="local folder or hub id of the weights; None: default"
    )
    units: int = Field(8, ge=1, le=512, description="L: frames, audio windows or tokens per post")


class ExtractSettings(Settings):
    """Feature extraction (`mishon extract`, DESIGN section 3)."""

    visual: ExtractorSettings = Field(
        default_factory=lambda: ExtractorSettings(name="efficientnet-lite0", units=8),
        description="frames extractor: efficientnet-lite0 (offline) or vit",
    )
    acoustic: ExtractorSettings = Field(
        default_factory=lambda: ExtractorSettings(name="logmel", units=8),
        description="sound extractor: logmel (offline), wav2vec2, or sound (the sound's "
        "identity; used by itself where no post has a video but posts name their sound)",
    )
    textual: ExtractorSettings = Field(
        default_factory=lambda: ExtractorSettings(name="minilm", units=32),
        description="caption extractor: minilm (offline, English), bert, or charngram "
        "(hashed character n-grams: any language, no weights)",
    )
    visual_frame_size: int = Field(
        224,
        ge=32,
        le=512,
        description="pixels (square) of the frames efficientnet-lite0 reads: 224 is its "
        "training size; smaller is faster",
    )
    batch_size: int = Field(
        16, ge=1, description="posts per batch; a batch is the unit of resumption"
    )
    workers: int = Field(2, ge=0, description="processes decoding media (0: decode in-process)")
    max_audio_s: float = Field(60.0, gt=0, description="seconds of sound read per post")
    allow_download: bool = Field(False, description="let transformers download missing weights")
    device: DeviceName = Field(
        "cpu", description="torch device of the extractors: cpu, auto, cuda or cuda:N"
    )
    retry_failed: bool = Field(False, description="on resume, try again the posts that failed")
    engine: Literal["local", "ray"] = Field(
        "local",
        description="local: worker processes on this machine; ray: decoding as Ray tasks and "
        "each extractor in a pool of Ray actors (pip install mishon[ray])",
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join (ray engine); None starts a local one"
    )
    ray_actors: int = Field(1, ge=1, description="actors per extractor (ray engine)")


class EdgeSettings(Settings):
    """k nearest neighbours kept per node, and the least similarity an edge needs."""

    k: int = Field(10, ge=0, description="neighbours per node (0: no edges of this type)")
    threshold: float = Field(0.0, ge=-1.0, le=1.0, description="minimum similarity (inclusive)")


class GraphSettings(Settings):
    """The heterogeneous graph (`mishon graph`, DESIGN sections 4 and 5)."""

    user: EdgeSettings = Field(
        default_factory=lambda: EdgeSettings(k=10, threshold=0.05),
        description="user-user edges: Jaccard of training hashtag sets",
    )
    visual: EdgeSettings = Field(
        default_factory=lambda: EdgeSettings(k=10, threshold=0.2),
        description="visual-visual edges: cosine of centred pooled features",
    )
    acoustic: EdgeSettings = Field(
        default_factory=lambda: EdgeSettings(k=10, threshold=0.2),
        description="acoustic-acoustic edges: cosine of centred pooled features",
    )
    textual: EdgeSettings = Field(
        default_factory=lambda: EdgeSettings(k=10, threshold=0.2),
        description="textual-textual edges: cosine of centred pooled features",
    )
    exact_max: int = Field(
        50000, ge=2, description="exact kNN up to this many nodes, else approximate"
    )
    index: Literal["ivf", "hnsw"] = Field("ivf", description="approximate index beyond exact_max")
    ivf_nlist: int | None = Field(None, ge=1, description="IVF lists; None: sqrt(N)")
    ivf_nprobe: int = Field(8, ge=1, description="IVF lists searched per query, to start with")
    target_recall: float | None = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="IVF: double nprobe until the recall measured on sampled queries reaches "
        "this; None keeps ivf_nprobe",
    )
    recall_queries: int = Field(1000, ge=10, description="sampled queries for the recall check")
    hnsw_m: int = Field(32, ge=4, description="HNSW links per node")
    hnsw_ef_search: int = Field(128, ge=1, description="HNSW search breadth")
    query_chunk: int = Field(4096, ge=1, description="queries per faiss search call (memory bound)")
    influence: Literal["auto", "engagement", "adoption"] = Field(
        "auto", description="influence measure; auto: engagement where the data has it"
    )
    popular_fraction: float = Field(
        0.05, gt=0.0, le=1.0, description="share of eligible users deemed popular"
    )
    popular_min_posts: int = Field(3, ge=1, description="training posts a popular user needs")
    cold_links: int = Field(5, ge=0, description="popular users each cold-start user is linked to")
    seed: int = Field(0, description="seed of the approximate index's k-means")


Aggregator = Literal["mean", "max", "min", "sum", "product"]


class ModelSettings(Settings):
    """The MISHON network (DESIGN section 6); the switches are the paper's ablations."""

    hidden: int = Field(128, ge=4, description="d: size of every node state and the fusion layer")
    attention_dim: int = Field(32, ge=1, description="size of the attention scoring space")
    attention: bool = Field(True, description="attention over units; False: their plain mean")
    graph: bool = Field(True, description="GraphSAGE over the graph; False: content-only model")
    layers: int = Field(2, ge=1, le=4, description="GraphSAGE layers")
    aggregator: Aggregator = Field("mean", description="neighbour aggregation of every SAGEConv")
    user_user_edges: bool = Field(True, description="keep user-user edges (Jaccard + cold links)")
    modality_edges: bool = Field(True, description="keep modality-modality kNN edges")
    user_embedding: bool = Field(True, description="learned embedding for users seen in training")
    user_dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of users whose embedding is left out in each training epoch, so "
        "training also sees users without one, as cold start does",
    )
    label_inputs: bool = Field(
        True,
        description="training posts' hashtags as inputs of their modality nodes, so the graph "
        "carries them to neighbours and users (hidden on each epoch's loss posts)",
    )
    label_rate: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="share of training posts whose hashtags are inputs in a training epoch; "
        "the rest are that epoch's loss posts",
    )
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout on the fused post vector")
    graph_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="dropout on each GraphSAGE layer's messages"
    )
    min_count: int = Field(
        2, ge=1, description="training uses a hashtag needs to enter the vocabulary"
    )
    encode_chunk: int = Field(
        8192, ge=1, description="posts per encoder chunk (bounds the [posts, L, D] activations)"
    )
    checkpoint_above: int = Field(
        2**27,
        ge=0,
        description="recompute encoder activations in backward for modalities with more unit "
        "values (posts x L x D) than this; below, keep them (faster, 4 bytes each)",
    )


class TrainSettings(Settings):
    """Training (`mishon train`): full-batch (one Adam step per epoch over its loss posts) or
    mini-batch over sampled neighbourhoods (`batch_size`), in one process or several
    (`torchrun`)."""

    epochs: int = Field(300, ge=1, description="most epochs (passes over the loss posts)")
    lr: float = Field(0.003, gt=0.0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="Adam L2 penalty")
    patience: int = Field(
        30, ge=1, description="stop after this many epochs without a better valid F1@K"
    )
    eval_every: int = Field(5, ge=1, description="epochs between validation passes")
    select_k: int = Field(5, ge=1, description="K of the validation F1@K used for selection")
    loss_chunk: int = Field(
        4096, ge=1, description="posts per output-layer chunk (bounds the [posts, V] logits)"
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description="loss posts per Adam step, over all processes, each over its sampled "
        "neighbourhood (bounded memory); None: full-batch, one step per epoch",
    )
    fanouts: list[Annotated[int, Field(ge=1)]] = Field(
        [10, 10],
        description="mini-batch: neighbours a node keeps per relation, one per GraphSAGE "
        "layer; the first for the batch posts' own neighbours (as PyG's num_neighbors)",
    )
    user_posts: int = Field(
        20, ge=1, description="mini-batch: posts whose content mean is a user's content input"
    )
    validation: Literal["full", "sampled"] = Field(
        "full",
        description="mini-batch: validation posts encoded over the whole graph (as evaluation "
        "does) or over sampled neighbourhoods (memory bounded like a step; for graphs whose "
        "whole-graph pass does not fit)",
    )
    seed: int = Field(0, description="seed of initialisation and dropout")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None: torch default")
    tracking: Literal["none", "tensorboard", "mlflow"] = Field(
        "none",
        description="also log settings, epochs and evaluations to tensorboard or mlflow "
        "(mishon[tracking]; RUN/tracking/ unless tracking_uri)",
    )
    tracking_uri: str | None = Field(
        None,
        description="tensorboard: a log folder; mlflow: a tracking URI (several runs in one "
        "store); None: inside the run directory",
    )
    device: DeviceName = Field(
        "auto",
        description="torch device of inputs, network and optimiser: auto (cuda when available), "
        "cpu, cuda or cuda:N",
    )


class RunSettings(Settings):
    """Everything `mishon train` reads from its --config YAML file."""

    split: str | None = Field(None, description="split name; None: the dataset's only split")
    graph: GraphSettings = Field(default_factory=GraphSettings, description="graph building")
    model: ModelSettings = Field(default_factory=ModelSettings, description="the network")
    train: TrainSettings = Field(default_factory=TrainSettings, description="the optimisation")

    @model_validator(mode="after")
    def _one_fanout_per_layer(self) -> RunSettings:
        if self.train.batch_size is not None and len(self.train.fanouts) < self.model.layers:
            raise ValueError(
                f"train.fanouts has {len(self.train.fanouts)} fan-outs for "
                f"{self.model.layers} GraphSAGE layers (model.layers): give one per layer"
            )
        return self


def documented_yaml(settings: Settings, indent: int = 0) -> str:
    """`settings` as YAML with each key's description as a comment (the config file reference)."""
    lines: list[str] = []
    pad = " " * indent
    for name, info in type(settings).model_fields.items():
        value = getattr(settings, name)
        comment = f"  # ({_type_name(info.annotation)}) {info.description or ''}".rstrip()
        if isinstance(value, Settings):
            lines.append(f"{pad}{name}:{comment}")
            lines.append(documented_yaml(value, indent + 2))
        else:
            dumped = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
            dumped = dumped.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"{pad}{name}: {dumped}{comment}")
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    """A short, readable name of a field's type: int, float | None, mean|max|..."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(annotation, "__name__", str(annotation))


class EvidenceIndexSettings(Settings):
    """How MISHON live finds the known posts nearest to a post (docs/design.md, "Approximate
    evidence"): an exact scan while few posts are known, a faiss inverted file beyond."""

    exact_max: int = Field(
        50000,
        ge=0,
        description="known posts searched exactly up to this many; beyond, an index "
        "(0: always the index)",
    )
    kind: Literal["ivf", "hnsw"] = Field(
        "ivf",
        description="the index beyond exact_max: ivf (an inverted file: nlist, nprobe, "
        "regrow) or hnsw (a navigable small-world graph: hnsw_m, ef_search)",
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="hnsw: links per vector")
    ef_search: int = Field(
        128, ge=8, description="hnsw: candidates kept while searching (recall against speed)"
    )
    ef_construction: int = Field(
        64, ge=8, description="hnsw: candidates kept while adding a vector"
    )
    nlist: int | None = Field(
        None, ge=1, description="IVF lists; None: sqrt of the known posts when it is built"
    )
    nprobe: int = Field(
        64,
        ge=1,
        description="IVF lists searched per query (64: the least of 24, 48, 64, 96 whose "
        "neighbour recall on #HowYouTagTweets' validation posts reached 0.95, docs/benchmarks.md)",
    )
    codes: Literal["float16", "pq4"] = Field(
        "pq4",
        description="ivf: how the lists store the vectors: pq4 (4-bit product codes, two "
        "dimensions per code, scanned in registers: a third of float16's search time) or "
        "float16 (every vector halved); either way the rows found are re-scored exactly",
    )
    refine: int = Field(
        4,
        ge=1,
        description="model space: the index proposes this many times the neighbours, "
        "re-scored exactly against the float32 vectors (pq4 codes rank rows only roughly; "
        "1 is enough for float16; content has `candidates`)",
    )
    candidates: int = Field(
        4,
        ge=1,
        description="content: each modality's index returns this many times the "
        "neighbours wanted, re-ranked by the exact mean cosine",
    )
    regrow: float = Field(
        4.0,
        gt=1.0,
        description="the index is trained again once the known posts are this "
        "many times those it was trained on",
    )
    seed: int = Field(0, description="seed of the index's k-means sample")


class SecondStageSettings(Settings):
    """How MISHON live turns a post's evidence into one ranking (docs/design.md, "The second
    stage"): the weighted sum found by the weight search, or a LightGBM LambdaRank model over
    the same evidence, whichever ranks held-out validation posts better."""

    mode: Literal["auto", "search", "learned"] = Field(
        "auto",
        description="auto: the learned ranker where it beats the weight search in every "
        "validation fold, else the search; search or learned: that one",
    )
    folds: int = Field(2, ge=2, le=10, description="validation folds (grouped by user) compared")
    trees: int = Field(300, ge=1, description="LambdaRank: boosting rounds")
    leaves: int = Field(15, ge=2, description="LambdaRank: leaves per tree")
    learning_rate: float = Field(0.05, gt=0.0, le=1.0, description="LambdaRank: shrinkage")
    min_child_samples: int = Field(20, ge=1, description="LambdaRank: candidates per leaf")
    seed: int = Field(0, description="LambdaRank's seed (its fit is deterministic)")


class EvidenceSettings(Settings):
    """How much of the known past each evidence reads (docs/design.md, "MISHON live")."""

    neighbours: int = Field(100, ge=1, description="known posts nearest in the model's space")
    temperature: float = Field(
        10.0, ge=0.0, description="sharpness of the neighbours' softmax over cosine"
    )
    own_temperature: float = Field(
        5.0, ge=0.0, description="sharpness of the softmax over the user's own known posts"
    )
    content_neighbours: int = Field(30, ge=1, description="known posts nearest in content")
    model_candidates: int = Field(50, ge=1, description="the model's best hashtags considered")
    popular_candidates: int = Field(20, ge=0, description="most used hashtags considered")
    linked_candidates: int = Field(
        50, ge=0, description="hashtags most used by the linked users considered"
    )
    sound_candidates: int = Field(
        20, ge=0, description="hashtags most carried by known posts with the sound considered"
    )
    index: EvidenceIndexSettings = Field(
        default_factory=EvidenceIndexSettings,
        description="exact scan or approximate index over the known posts",
    )
    second_stage: SecondStageSettings = Field(
        default_factory=SecondStageSettings,
        description="weight search or learned ranker over the evidence, chosen on validation",
    )


Container = Literal["mp4", "mov", "webm", "mkv"]
CONTAINERS: tuple[Container, ...] = ("mp4", "mov", "webm", "mkv")


class ServeSettings(Settings):
    """The HTTP service (`mishon serve`)."""

    host: str = Field(
        "127.0.0.1", description="interface to bind; loopback unless exposed on purpose"
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    max_upload_mb: float = Field(50.0, gt=0, description="largest accepted video upload")
    max_caption_chars: int = Field(5000, ge=1, description="longest accepted caption")
    timeout_s: float = Field(60.0, gt=0, description="a recommendation taking longer answers 504")
    max_concurrent: int = Field(
        4, ge=1, description="recommendations computed at once; others wait"
    )
    max_k: int = Field(100, ge=1, description="largest k a request may ask for")
    max_batch: int = Field(64, ge=1, description="most posts in one /v1/recommend/batch")
    device: DeviceName = Field(
        "cpu", description="torch device of the model: cpu, auto, cuda or cuda:N"
    )
    containers: list[Container] = Field(
        default_factory=lambda: list(CONTAINERS),
        description="accepted video containers, recognised from the upload's first bytes "
        "(the declared content type is not trusted)",
    )
    max_hashtags: int = Field(50, ge=1, description="most hashtags a recorded post may carry")
    max_hashtag_chars: int = Field(100, ge=1, description="longest accepted hashtag")
    max_json_kb: float = Field(
        64.0, gt=0, description="largest request body other than a video upload"
    )
    body_timeout_s: float = Field(
        120.0, gt=0, description="a request body must arrive within this time, else 408"
    )
    max_connections: int = Field(
        100, ge=1, description="open connections at once; more are answered 503"
    )
    max_connections_per_client: int = Field(
        32, ge=1, description="open connections from one address; more are closed at once"
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a connection whose request line and headers have not arrived this long "
        "after it opened (or after its last answer) is closed",
    )
    evidence: EvidenceSettings = Field(
        default_factory=EvidenceSettings,
        description="how much of the known past MISHON live reads, and how it searches it",
    )
    token: SecretStr | None = Field(
        None,
        min_length=16,
        description="bearer token required to record posts (POST /v1/posts); "
        "`mishon serve` also reads MISHON_TOKEN",
    )
    db: SecretStr | None = Field(
        None,
        description="record store URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
        "(replicas share one PostgreSQL); none: SQLite in state_dir; `mishon serve` also "
        "reads MISHON_DB",
    )
    state_dir: Path | None = Field(
        None,
        description="folder for the service's own files (the SQLite store, uploads in "
        "flight); none: serve-state/ beside the run directory. Nothing is written into the "
        "run directory",
    )
    follow_s: float = Field(
        0.25,
        gt=0,
        le=60,
        description="how often a replica takes in the posts other replicas recorded",
    )
    worker_start_s: int = Field(
        300,
        ge=1,
        description="with --workers: how long a new worker process may take to load the run "
        "before a SIGHUP replacement gives up on it (the old one keeps serving)",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="torch (and BLAS) threads of each service process: one request's work is "
        "too small to share out, so one thread each and more requests (or --workers) at once",
    )
    extract_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="featurizations (decoding and extraction) run at once; ranking has its "
        "own lock, so one request's extraction overlaps another's ranking",
    )
