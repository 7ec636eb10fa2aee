"""Which torch device a stage runs on: `auto`, `cpu`, `cuda` or `cuda:N` (settings `device`)."""

from __future__ import annotations

import torch

from mishon.errors import MishonError


def resolve_device(name: str = "auto", setting: str = "train.device") -> torch.device:
    """The torch device for a settings value; `auto` picks the first GPU when there is one.

    Raises MishonError when a GPU is asked for and this machine has none (or not that many).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MishonError(
                f"{setting} is {name!r} but torch sees no GPU: use {setting}=cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MishonError(
                f"{setting} is {name!r} but torch sees {torch.cuda.device_count()} GPU(s)"
            )
    return device
