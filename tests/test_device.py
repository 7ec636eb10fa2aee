"""Where training runs: `train.device`, inputs and network moved together, CPU/GPU parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from mishon.config import RunSettings, TrainSettings, load_settings
from mishon.device import resolve_device
from mishon.errors import MishonError
from mishon.recommenders.inductive import InductiveRecommender
from mishon.train.run import load_run, train_model
from mishon.train.trainer import load_optimizer_state, save_optimizer_state

from .planted import planted_dataset, small_settings

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return planted_dataset(tmp_path_factory.mktemp("planted") / "ds")


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_names_are_accepted(name: str) -> None:
    assert TrainSettings(device=name).device == name


@pytest.mark.parametrize("name", ["gpu", "cuda:", "CPU", "cuda:x", "mps"])
def test_bad_device_names_are_refused_with_the_key(name: str) -> None:
    with pytest.raises(MishonError, match=r"train\.device: .*auto, cpu, cuda or cuda:N"):
        load_settings(RunSettings, overrides={"train": {"device": name}})


def test_auto_is_cpu_without_a_gpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_missing_gpu_names_the_setting() -> None:
    with pytest.raises(MishonError, match=r"train.device is 'cuda' but torch sees no GPU"):
        resolve_device("cuda")


def test_optimizer_state_round_trips_without_pickle(tmp_path: Path) -> None:
    parameters = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    optimizer = torch.optim.Adam(parameters, lr=0.01, betas=(0.8, 0.95))
    for _ in range(2):
        optimizer.zero_grad()
        sum((p**2).sum() for p in parameters).backward()
        optimizer.step()
    save_optimizer_state(optimizer.state_dict(), tmp_path / "optimizer.safetensors")
    with safe_open(str(tmp_path / "optimizer.safetensors"), framework="pt") as handle:
        assert "param_groups" in handle.metadata()  # a safetensors file, not a pickle
    restored = torch.optim.Adam(parameters, lr=1.0)
    restored.load_state_dict(load_optimizer_state(tmp_path / "optimizer.safetensors"))
    assert restored.param_groups[0]["lr"] == 0.01
    assert tuple(restored.param_groups[0]["betas"]) == (0.8, 0.95)
    for index, entries in optimizer.state_dict()["state"].items():
        for name, value in entries.items():
            torch.testing.assert_close(restored.state_dict()["state"][index][name], value)


@needs_cuda
def test_training_on_cuda_matches_the_cpu(planted: Path, tmp_path: Path) -> None:
    results = {}
    for device in ("cpu", "cuda"):
        settings = small_settings(epochs=20, device=device)
        # dropout masks come from each device's own generator: off, so the runs can agree
        settings.model.dropout = 0.0
        network, inputs, _, state = train_model(planted, settings, tmp_path / device)
        assert inputs.device.type == device
        assert next(network.parameters()).device.type == device
        results[device] = (network.state_dict(), state)
    cpu_weights, cpu_state = results["cpu"]
    cuda_weights, cuda_state = results["cuda"]
    cpu_losses = [row["loss"] for row in cpu_state.history]
    cuda_losses = [row["loss"] for row in cuda_state.history]
    np.testing.assert_allclose(cuda_losses, cpu_losses, rtol=2e-3)
    for key, value in cpu_weights.items():
        torch.testing.assert_close(cuda_weights[key].cpu(), value, atol=5e-3, rtol=5e-3)
    # a run loaded onto the GPU recommends like the same run on the CPU
    on_cpu = InductiveRecommender(load_run(tmp_path / "cuda", device="cpu"))
    on_gpu = InductiveRecommender(load_run(tmp_path / "cuda", device="cuda"))
    assert on_gpu.device.type == "cuda"
    for position in range(0, len(on_cpu.post_ids), 9):
        cpu_top = on_cpu.recommend_existing(position, 3)
        gpu_top = on_gpu.recommend_existing(position, 3)
        assert [t for t, _ in gpu_top] == [t for t, _ in cpu_top]
        np.testing.assert_allclose([s for _, s in gpu_top], [s for _, s in cpu_top], atol=1e-4)


@needs_cuda
def test_resume_on_cuda_continues_exactly(planted: Path, tmp_path: Path) -> None:
    whole, _, _, _ = train_model(planted, small_settings(epochs=10, device="cuda"), tmp_path / "a")
    train_model(planted, small_settings(epochs=5, device="cuda"), tmp_path / "b")
    resumed, _, _, _ = train_model(
        planted, small_settings(epochs=10, device="cuda"), tmp_path / "b", resume=True
    )
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


def test_extraction_resolves_its_device_setting() -> None:
    from mishon.config import ExtractorSettings, ExtractSettings
    from mishon.features.base import Modality
    from mishon.features.registry import create_extractor

    extractor = create_extractor(
        Modality.VISUAL,
        ExtractorSettings(name="efficientnet-lite0"),
        ExtractSettings(device="auto"),
    )
    assert extractor.device == resolve_device("auto")  # type: ignore[attr-defined]
    with pytest.raises(MishonError, match=r"device: .*device must be auto, cpu, cuda or cuda:N"):
        load_settings(ExtractSettings, overrides={"device": "gpu0"})
