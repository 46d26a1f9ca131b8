"""patch2image's workflow (004 sec. 5.2): whole-image training batches, and the four phases of
the Light network through the CLI, ending with the phase table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from retina_lightning.data import OfficialSplit, Preprocess, SyntheticFundus
from retina_lightning.data.transforms import Augment
from retina_lightning.patch2image import (
    PHASES,
    PhaseResult,
    WholeImageDataModule,
    format_phase_table,
    main,
)

REPO = Path(__file__).resolve().parents[1]


def test_whole_image_batches_cover_each_training_image_once_per_epoch():
    datamodule = WholeImageDataModule(
        multiple=16,
        dataset=SyntheticFundus(num_train=4, num_test=1, height=40, width=36, seed=2),
        split=OfficialSplit(val_fraction=0.25),
        preprocess=Preprocess(channels="green", normalize="image"),
        augment=Augment(hflip=False, vflip=False, rot90=False, brightness=0, contrast=0),
        patch_size=16,
        batch_size=1,
        steps_per_epoch=3,
    )
    datamodule.setup("fit")
    train = datamodule.samples.train
    assert len(train) == 3
    seen = []
    for step in range(3):
        batch = datamodule.training_patches(step, torch.device("cpu"))
        assert batch["image"].shape == (1, 1, 48, 48)  # 40 x 36 padded to a square of 16s
        assert batch["label"].shape == (1, 48, 48) and batch["fov"].dtype == torch.bool
        fov = batch["fov"][0]
        assert not fov[40:].any() and not fov[:, 36:].any()  # padding is outside the FOV
        # which training image is it: the label map identifies it
        matches = [
            i
            for i, s in enumerate(train)
            if torch.equal(batch["label"][0, :40, :36], torch.from_numpy(s.label).long())
        ]
        assert len(matches) == 1
        seen.append(matches[0])
        # normalised inside the FOV with the image's own statistics, as validation images
        x = batch["image"][0, 0][fov]
        assert abs(x.mean().item()) < 1e-4 and abs(x.std(unbiased=False).item() - 1) < 1e-2
    assert sorted(seen) == [0, 1, 2]


def test_phase_table_has_004_columns(tmp_path):
    metrics = {"pooled": {"auroc": 0.98, "sp@0.5": 0.97, "se@0.5": 0.8, "acc@0.5": 0.96}}
    rows = [PhaseResult(p, tmp_path, tmp_path / f"{i}.json", metrics) for i, p in enumerate(PHASES)]
    lines = format_phase_table(rows).splitlines()
    assert "inside the FOV" in lines[0]
    assert lines[1].split() == ["AUC", "Spec", "Sens", "Acc", "Dice", "Jaccard", "AUPRC"]
    assert lines[2].split() == ["Patch", "0.9800", "0.9700", "0.8000", "0.9600", "-", "-", "-"]
    assert [line.split()[0] for line in lines[2:6]] == list(PHASES)
    assert "no FOV mask" not in "\n".join(lines)  # only when the test measured it


def test_phase_table_prints_004s_protocol_beside_the_suites(tmp_path):
    unmasked = {"per_image_mean": {"auroc": 0.981, "f1@0.5": 0.795}}
    metrics = {"pooled": {"auroc": 0.97, "f1@0.5": 0.80}, "unmasked": unmasked}
    rows = [PhaseResult("Image/Fine-tuned", tmp_path, tmp_path / "m.json", metrics)]
    lines = format_phase_table(rows).splitlines()
    i = next(k for k, line in enumerate(lines) if "no FOV mask" in line)
    assert lines[i + 2].split() == ["Image/Fine-tuned", "0.9810", "-", "-", "-", "0.7950", "-", "-"]
    assert lines[2].split()[:2] == ["Image/Fine-tuned", "0.9700"]


TINY = [
    "--trainer.max_epochs=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.init_args.dataset.init_args.num_train=3",
    "--data.init_args.dataset.init_args.num_test=1",
    "--data.init_args.dataset.init_args.height=48",
    "--data.init_args.dataset.init_args.width=44",
    "--data.init_args.patch_size=16",
    "--data.init_args.batch_size=4",
    "--data.init_args.steps_per_epoch=2",
    "--model.init_args.figures=false",
]


#: what lets the Light network learn in seconds (it stays at chance with the config's AdaDelta
#: here): plain high-contrast images, 120 steps of 16 patches with Adam, half of them centred on
#: a vessel. Without that share the 8,889 weights stayed at chance in float32 (AUROC 0.49-0.54
#: on a CPU without native bf16, issue 25) while bf16 learned (0.85); with it both reach
#: 0.83-0.90 over seeds 0-3 (lr 0.01 still stays at chance).
LEARNABLE = [
    "--data.init_args.vessel_fraction=0.5",
    "--data.init_args.dataset.init_args.vessel_contrast=2.0",
    "--data.init_args.dataset.init_args.noise_std=0.01",
    "--data.init_args.dataset.init_args.lesions=0.0",
    "--data.init_args.dataset.init_args.texture_std=0.0",
    "--data.init_args.dataset.init_args.height=64",
    "--data.init_args.dataset.init_args.width=64",
    "--data.init_args.patch_size=32",
    "--data.init_args.batch_size=16",
    "--data.init_args.steps_per_epoch=40",
    "--trainer.max_epochs=3",
    "--optimizer.class_path=torch.optim.Adam",
    "--optimizer.init_args.lr=0.003",
]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_light_chain_ends_with_the_phase_table(tmp_path, capsys, precision):
    """In both precisions a CPU may train in (fp32 without native bf16, issue 25)."""
    config = str(REPO / "configs/patch2image/synthetic_light.yaml")
    args = ["--config", config, "--runs_dir", str(tmp_path), "--image_epochs", "1"]
    results = main([*args, *TINY, *LEARNABLE, f"--trainer.precision={precision}"])
    assert [r.phase for r in results] == list(PHASES)
    for r in results:
        stored = json.loads(r.metrics_path.read_text())
        assert stored == r.metrics and stored["model"] == "LightNet"
        assert stored["num_parameters"] == 8889 and stored["num_images"] == 1
    # Patch and Image/Frozen test the same checkpoint; the image phases are separate runs
    patch, frozen, finetuned, scratch = results
    assert patch.run_dir == frozen.run_dir and patch.metrics_path != frozen.metrics_path
    # the image rows run on whole images (the Patch row: see the xfail test below)
    assert all(r.inference.startswith("Inferer(mode='whole'") for r in results[1:])
    assert len({frozen.run_dir, finetuned.run_dir, scratch.run_dir}) == 3
    assert "patch2image/synthetic_light/finetune" in str(finetuned.run_dir)
    # phase 4 starts from the phase-2 weights (strict: a tensor missing would fail the run)
    fine_config = (finetuned.run_dir / "config.yaml").read_text()
    assert "TransferLearning" in fine_config and "WholeImageDataModule" in fine_config
    assert "TransferLearning" not in (scratch.run_dir / "config.yaml").read_text()
    out = capsys.readouterr().out
    table = out[out.index("AUC") :].splitlines()
    assert [line.split()[0] for line in table[1:5]] == list(PHASES)
    aucs = [float(line.split()[1]) for line in table[1:5]]
    assert aucs == pytest.approx([r.metrics["pooled"]["auroc"] for r in results], abs=5e-5)
    # the patch network learned (0.85 here) and phases 3-4 start from it (0.86, 0.87); the
    # scratch network, one epoch on two images, is at chance (0.50), as is every row of an
    # untrained or misaligned pipeline (0.49-0.53 with the TINY recipe alone)
    assert min(aucs[:3]) > 0.7, aucs
    assert 0.0 <= aucs[3] <= 1.0


@pytest.mark.slow
def test_retina_test_applies_the_configs_inferer_over_the_checkpoints(tmp_path):
    """``retina test --config X --config sliding.yaml --ckpt_path C``: the test runs with the
    inferer of the given config (the Patch row of 004), not the one the checkpoint was trained
    with."""
    import yaml

    from retina_lightning.cli import main as retina

    config = str(REPO / "configs/patch2image/synthetic_light.yaml")
    runs = ["--runs_dir", str(tmp_path)]
    fit = retina(["fit", "--config", config, *TINY, *runs])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    sliding = tmp_path / "sliding.yaml"
    inferer = {"mode": "sliding", "tile_size": 16, "stride": 8}
    sliding.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "init_args": {
                        "inferer": {
                            "class_path": "retina_lightning.inference.Inferer",
                            "init_args": inferer,
                        }
                    }
                }
            }
        )
    )
    test = retina(
        ["test", "--config", config, "--config", str(sliding), *TINY, *runs, "--ckpt_path", ckpt]
    )
    assert test.model.inferer.mode == "sliding"
