"""What an artifact was built from: content fingerprints that link the stages.

Each stage's output records the fingerprints of its inputs (a `Lineage`): the split's post
assignment, the feature stores, the settings, the graph, the run's weights, the code version.
Loading an artifact computes the same fingerprints from what is on disk now and compares: a
graph whose inputs changed is rebuilt, a run or an evaluation whose inputs changed is refused,
with the changed inputs named (`Lineage.changes`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from mishon import __version__

DIGEST_CHARS = 16  # 64 bits of sha256: enough to tell versions of one artifact apart


def digest(value: Any) -> str:
    """A short sha256 fingerprint of a JSON-serialisable value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


def file_digest(*paths: Path, block: int = 1 << 24) -> str:
    """A short sha256 fingerprint of the bytes of `paths`, read in blocks."""
    hasher = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(block):
                hasher.update(chunk)
    return hasher.hexdigest()[:DIGEST_CHARS]


def settings_digest(settings: BaseModel, **dump: Any) -> str:
    """The fingerprint of `settings` (`dump`: model_dump's include/exclude): only the values
    that differ from their defaults count, so a setting that a later MISHON adds at its default
    leaves the fingerprints of earlier artifacts unchanged, while a changed default does not
    (the artifact records the value it was built with)."""
    return digest(settings.model_dump(mode="json", exclude_defaults=True, **dump))


def legacy_settings_digest(settings: BaseModel, **dump: Any) -> str:
    """The settings fingerprint MISHON recorded before `settings_digest`: every value. Read
    only, so that artifacts made then still load while no setting has been added since."""
    return digest(settings.model_dump(mode="json", **dump))


LABELS = {
    "posts": "the dataset's posts (posts.parquet)",
    "split": "the split's post assignment",
    "features": "the feature stores",
    "settings": "the settings",
    "graph": "the graph",
    "run": "the run's weights",
    "code": "the MISHON version",
}


class Lineage(BaseModel):
    """Fingerprints of an artifact's inputs; None where an input does not apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = __version__
    posts: str | None = None
    split: str | None = None
    features: str | None = None
    settings: str | None = None
    graph: str | None = None
    run: str | None = None

    @property
    def fingerprint(self) -> str:
        """The artifact's own fingerprint: that of everything it was built from."""
        return digest(self.model_dump())

    def changes(
        self, now: Lineage, ignore: tuple[str, ...] = (), legacy_settings: str | None = None
    ) -> list[str]:
        """Inputs recorded in both whose fingerprints differ, as readable labels;
        `legacy_settings`: `now`'s settings as `legacy_settings_digest` fingerprints them, also
        accepted."""
        if legacy_settings is not None and self.settings == legacy_settings:
            now = now.model_copy(update={"settings": legacy_settings})
        return [
            LABELS[name]
            for name in type(self).model_fields
            if name not in ignore
            and getattr(self, name) is not None
            and getattr(now, name) is not None
            and getattr(self, name) != getattr(now, name)
        ]

    @classmethod
    def read(cls, meta: dict[str, Any]) -> Lineage | None:
        """The lineage recorded in an artifact's metadata, or None (made before lineages)."""
        recorded = meta.get("lineage")
        return cls.model_validate(recorded) if isinstance(recorded, dict) else None
