"""What only a CUDA GPU can check (every test here is skipped without one; `make gpu-check`
runs them on a GPU machine):

* the device-side patch sampler and augmentation on CUDA give the CPU's patches;
* ``retina fit`` in ``bf16-mixed`` and ``16-mixed`` (and the suite's default precision on a
  GPU), then ``retina test`` of the checkpoint, through the CLI of a tiny synthetic config;
* whole-image and sliding-window inference on CUDA equal the CPU's within float tolerance, and
  evaluation stays in float32 under an outer autocast;
* the training-throughput benchmark measures the three CUDA precisions.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from helpers import TINY_CLI, patch_stack

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"
)

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
SYNTHETIC = str(REPO / "configs" / "synthetic" / "unet.yaml")


@pytest.fixture(autouse=True)
def _strict_float32():
    """No TF32 in the comparisons with the CPU (torch lets cuDNN convolutions use it by
    default, which changes results around the 1e-3 level); restored afterwards."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


# --------------------------------------------------------------------- patch sampler


def _stack(n=3, h=60, w=70):
    return patch_stack(n, h, w, vessel_share=0.12)


def test_cuda_sampler_cuts_the_cpu_windows_for_the_same_centres():
    from retina_lightning.data.sampler import PatchSampler

    images, labels, fovs = _stack()
    cpu = PatchSampler(images, labels, fovs, window=17, vessel_fraction=0.3)
    gpu = PatchSampler(images.to(CUDA), labels.to(CUDA), fovs.to(CUDA), 17, 0.3)
    idx, y, x = cpu.centres(64, torch.Generator().manual_seed(3))
    for a, b in zip(cpu.cut(idx, y, x), gpu.cut(idx.to(CUDA), y.to(CUDA), x.to(CUDA))):
        assert b.device.type == "cuda"
        assert torch.equal(a, b.cpu())


def test_cuda_sampler_same_seed_same_patches_inside_the_fov():
    from retina_lightning.data.sampler import PatchSampler

    images, labels, fovs = _stack()
    gpu = PatchSampler(images.to(CUDA), labels.to(CUDA), fovs.to(CUDA), 9, 0.5)
    first, again = gpu.sample(128, seed=11), gpu.sample(128, seed=11)
    for u, v in zip(first, again):
        assert torch.equal(u, v)
    assert not torch.equal(gpu.sample(128, seed=12)[0], first[0])
    idx, y, x = gpu.centres(400, torch.Generator().manual_seed(0))
    assert fovs[idx.cpu(), y.cpu(), x.cpu()].all()
    assert labels[idx.cpu(), y.cpu(), x.cpu()].float().mean() > 0.5  # vessel oversampling


def test_cuda_sampler_draws_the_cpu_centres_for_the_same_seed():
    from retina_lightning.data.sampler import PatchSampler

    images, labels, fovs = _stack()
    cpu = PatchSampler(images, labels, fovs, 9, 0.3)
    gpu = PatchSampler(images.to(CUDA), labels.to(CUDA), fovs.to(CUDA), 9, 0.3)
    for a, b in zip(cpu.sample(32, seed=5), gpu.sample(32, seed=5)):
        assert torch.equal(a, b.cpu())


def test_cuda_training_patches_equal_the_cpu_ones_given_the_same_draws(
    tiny_datamodule, monkeypatch
):
    """The whole device pipeline (gather, kornia flips / rotation / jitter, normalisation) on
    CUDA against the CPU, with the CUDA sampler fed the CPU's centres for each seed."""
    from retina_lightning.data.sampler import PatchSampler
    from retina_lightning.data.transforms import Augment

    augment = Augment(
        hflip=True, vflip=True, rot90=True, rotation=180.0, brightness=0.2, contrast=0.2
    )
    dm_cpu = tiny_datamodule(augment=augment, vessel_fraction=0.25)
    dm_gpu = tiny_datamodule(augment=augment, vessel_fraction=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm_cpu.setup("fit")
        dm_gpu.setup("fit")
    cpu_batches = [dm_cpu.training_patches(step, CPU) for step in range(3)]
    cpu_sampler = dm_cpu._sampler
    original = PatchSampler.sample

    def sample_with_cpu_draws(self, n, seed):
        if self.device.type != "cuda":
            return original(self, n, seed)
        idx, y, x = cpu_sampler.centres(n, torch.Generator().manual_seed(seed))
        idx, y, x = idx.to(self.device), y.to(self.device), x.to(self.device)
        return (*self.cut(idx, y, x), idx)

    monkeypatch.setattr(PatchSampler, "sample", sample_with_cpu_draws)
    for step, expected in enumerate(cpu_batches):
        got = dm_gpu.training_patches(step, CUDA)
        assert got["image"].device.type == "cuda"
        assert got["image"].shape == expected["image"].shape
        same_label = (got["label"].cpu() == expected["label"]).float().mean()
        same_fov = (got["fov"].cpu() == expected["fov"]).float().mean()
        assert same_label > 0.995 and same_fov > 0.995  # rounding ties of warped masks
        inside = expected["fov"] & got["fov"].cpu()
        diff = (got["image"].cpu() - expected["image"]).abs().amax(1)[inside]
        assert float(diff.max()) < 1e-3, f"step {step}: max |cuda - cpu| = {float(diff.max())}"


# -------------------------------------------------------------------- retina fit / test


def _fit(tmp_path: Path, *extra: str):
    from retina_lightning.cli import main

    args = ["fit", "--config", SYNTHETIC, *TINY_CLI, "--runs_dir", str(tmp_path / "runs")]
    return main([*args, "--trainer.accelerator=gpu", "--trainer.devices=1", *extra])


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_retina_fit_and_test_in_mixed_precision(tmp_path, precision):
    from retina_lightning.cli import main

    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    experiment = f"gpu/{precision}"
    cli = _fit(tmp_path, f"--trainer.precision={precision}", "--experiment", experiment)
    assert cli.trainer.precision == precision
    assert cli.trainer.global_step == 2
    assert next(cli.model.parameters()).device.type == "cuda"
    assert next(cli.model.parameters()).dtype == torch.float32  # mixed: float32 weights
    loss = cli.trainer.callback_metrics.get("train/loss")
    assert loss is not None and torch.isfinite(loss)
    run = next((tmp_path / "runs" / experiment).iterdir())
    assert (run / "checkpoints" / "last.ckpt").is_file()
    test = main(
        [
            "test",
            "--config",
            SYNTHETIC,
            *TINY_CLI,
            "--runs_dir",
            str(tmp_path / "runs"),
            "--experiment",
            experiment,
            "--trainer.accelerator=gpu",
            "--trainer.devices=1",
            f"--trainer.precision={precision}",
            "--ckpt_path",
            "best",
        ]
    )
    report = json.loads((Path(test.model.results_dir) / "metrics.json").read_text())
    assert 0.0 <= report["pooled"]["auroc"] <= 1.0


def test_retina_fit_uses_the_suites_default_precision_on_the_gpu(tmp_path):
    from retina_lightning.precision import default_precision

    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    assert default_precision("gpu") == default_precision("cuda") == expected
    cli = _fit(tmp_path, "--experiment", "gpu/default")
    assert cli.trainer.precision == expected
    assert cli.trainer.global_step == 2


# ------------------------------------------------------------------------- inference


def _image(channels: int, h: int = 292, w: int = 283) -> torch.Tensor:
    from retina_lightning.data.synthetic import generate_fundus
    from retina_lightning.data.transforms import Preprocess

    sample = generate_fundus(0, h, w)
    pre = Preprocess(channels="rgb" if channels == 3 else "gray")
    raw = torch.from_numpy(sample.image).permute(2, 0, 1)[None]
    fov = torch.from_numpy(sample.fov)[None]
    conditioned = pre.condition(raw)
    mean, std = pre.fov_stats(conditioned, fov)
    return pre.normalise(conditioned, mean, std)


@pytest.mark.parametrize("method", ["unet", "dpn", "patch2image_miniunet"])
def test_inference_on_cuda_equals_the_cpu(method):
    """Whole image and sliding window of a half-DRIVE-sized image (odd sizes: padding), the
    DRIVE config's network, random weights."""
    from benchmarks.reference import METHODS, build_model
    from retina_lightning.inference import Inferer

    torch.manual_seed(0)
    model, channels, _ = build_model(METHODS[method])
    model.eval()
    image = _image(channels)
    for inferer in (Inferer("whole"), Inferer("sliding", 128, 64, batch_size=16)):
        expected = inferer(model, image)
        got = inferer(model.to(CUDA), image.to(CUDA)).cpu()
        model.cpu()
        assert got.shape == expected.shape
        diff = float((got - expected).abs().max())
        assert diff < 1e-4, f"{method} {inferer.mode}: max |cuda - cpu| = {diff:.2e}"


def test_evaluation_runs_in_float32_under_autocast():
    """The task's probabilities on CUDA do not depend on an outer autocast (training's
    bf16-mixed / 16-mixed): evaluation is float32 (retina_lightning.precision)."""
    from retina_lightning.models import UNet
    from retina_lightning.tasks import SegmentationTask

    torch.manual_seed(0)
    task = SegmentationTask(UNet(3, 1, base_channels=8, depth=3)).to(CUDA).eval()
    image = _image(3, 128, 160).to(CUDA)
    plain = task.predict_probs(image)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cuda", dtype=dtype):
            probs = task.predict_probs(image)
        assert probs.dtype == torch.float32
        assert torch.allclose(probs, plain, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------- benchmarks


def test_bench_training_cuda_precisions(tmp_path):
    import importlib

    from benchmarks.common import read_table

    bt = importlib.import_module("benchmarks.bench_training")
    threads = torch.get_num_threads()
    try:
        bt.main(
            [
                "--tiny",
                "--device",
                "cuda",
                "--threads",
                "1",
                "--models",
                "patch2image_light,dpn",
                "--channels-last",
                "--out-dir",
                str(tmp_path),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    rows = read_table(tmp_path / "gpu_training_throughput_tiny.csv")
    assert len(rows) == 2 * 3 * 2  # models x precisions x (eager, channels_last)
    assert {r["precision"] for r in rows} == {"32-true", "bf16-mixed", "16-mixed"}
    assert all(r["device"] == "cuda" and not r["note"] for r in rows)
    for r in rows:
        assert float(r["patches/s"]) > 0 and float(r["peak GPU MiB"]) > 0
    defaults = {r["precision"] for r in rows if r["suite default"] == "True"}
    assert defaults == {"bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"}
