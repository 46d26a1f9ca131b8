"""`retina predict` on a checkpoint of a real (tiny) `retina fit`: outputs, CSV, errors."""

from __future__ import annotations

import copy
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA_ROOT, TINY_CLI, needs
from PIL import Image
from torch import nn

from retina_lightning.data.datamodule import RetinaDataModule
from retina_lightning.data.fov import derive_fov
from retina_lightning.data.io import read_image, read_mask
from retina_lightning.data.synthetic import generate_fundus
from retina_lightning.data.transforms import Preprocess
from retina_lightning.inference import Inferer
from retina_lightning.measure import av_widths, vessel_widths
from retina_lightning.models import UNet
from retina_lightning.predict import (
    Predictor,
    build_parser,
    load_predictor,
    match_fov,
    predict_image,
    predict_main,
    preprocess_from,
    width_colours,
    width_segmentation,
)
from retina_lightning.tasks.segmentation import SegmentationTask, vessel_probability
from retina_lightning.types import ARTERY, VEIN

REPO = Path(__file__).resolve().parents[1]


TINY = [*TINY_CLI, "--model.init_args.model.init_args.depth=2"]
OUTPUTS = ("_prob", "_mask", "_overlay")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """last.ckpt of a real `retina fit` of the quickstart config, shrunk to seconds."""
    from retina_lightning.cli import main

    runs = tmp_path_factory.mktemp("runs")
    config = str(REPO / "configs/synthetic/unet.yaml")
    main(["fit", "--config", config, *TINY, "--runs_dir", str(runs)])
    (path,) = runs.glob("synthetic/unet/*/checkpoints/last.ckpt")
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Two synthetic fundus photographs, a PNG (72 x 64) and a JPEG (60 x 80)."""
    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(generate_fundus(11, 64, 72).image).save(folder / "eye_a.png")
    Image.fromarray(generate_fundus(12, 80, 60).image).save(folder / "eye_b.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    # a map of an earlier run saved beside its input is not an input
    Image.fromarray(np.zeros((64, 72), np.uint8)).save(folder / "eye_a_prob.png")
    (folder / "sub").mkdir()
    return folder


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_predict_folder_writes_every_map_and_the_csv(ckpt, images, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--ckpt_path", str(ckpt), "--input", str(images), "--output", str(out)]
    code = predict_main([*argv, "--width", "--pixel_size_um", "10", "--no_progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "images/s disk to disk" in err
    rows = {r["name"]: r for r in _read_csv(out / "predictions.csv")}
    assert sorted(rows) == ["eye_a", "eye_b"]
    predictor = load_predictor(ckpt, device="cpu")
    for name, suffix, (h, w) in (("eye_a", ".png", (64, 72)), ("eye_b", ".jpg", (80, 60))):
        for kind in (*OUTPUTS, "_width"):
            with Image.open(out / f"{name}{kind}.png") as im:
                assert im.size == (w, h), kind
        image = read_image(images / f"{name}{suffix}")
        fov = derive_fov(image)
        mask = _png(out / f"{name}_mask.png")
        assert set(np.unique(mask)) <= {0, 255} and not mask[~fov].any()
        # the written mask is the checkpoint's threshold applied to the model's probabilities
        prob = vessel_probability(torch.from_numpy(predictor(image, fov))[None])[0].numpy()
        np.testing.assert_array_equal(mask > 0, (prob >= predictor.threshold) & fov)
        np.testing.assert_array_equal(
            _png(out / f"{name}_prob.png"), np.round(prob * fov * 255).astype(np.uint8)
        )
        row = rows[name]
        assert (int(row["height"]), int(row["width"]), row["fov"]) == (h, w, "derived")
        assert float(row["threshold"]) == pytest.approx(predictor.threshold, abs=1e-6)
        assert float(row["vessel_density"]) == pytest.approx((mask > 0).sum() / fov.sum(), abs=1e-4)
        assert (mask > 0).any() and float(row["width_mean_px"]) > 0  # it finds vessels
        # widths are measured on the written mask: one threshold for every map (issue 22)
        segmented = width_segmentation(predictor(image, fov), fov, predictor.threshold)[1]
        np.testing.assert_array_equal(segmented, mask > 0)
        assert row["width_rule"] == f">={predictor.threshold:.4g}"
        assert float(row["width_mean_px"]) == pytest.approx(vessel_widths(mask > 0).mean, rel=1e-5)
        assert float(row["width_mean_um"]) == pytest.approx(
            10 * float(row["width_mean_px"]), rel=1e-5
        )
        assert float(row["seconds"]) > 0


def test_predictor_sees_images_as_retina_test_does(ckpt):
    """Same preprocessing (from the checkpoint's datamodule config) and inference as the
    task's own test path through RetinaDataModule.prepare_whole."""
    predictor = load_predictor(ckpt, device="cpu")
    assert predictor.preprocess == Preprocess(channels="rgb", normalize="image")
    task = SegmentationTask.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    task.eval()
    assert predictor.threshold == pytest.approx(float(task.threshold))
    s = generate_fundus(5, 48, 56)
    batch = {
        "image": torch.from_numpy(s.image.transpose(2, 0, 1).copy())[None],
        "fov": torch.from_numpy(s.fov)[None],
        "label": torch.from_numpy(s.label)[None],
    }
    dm = RetinaDataModule(preprocess=predictor.preprocess)
    # the checkpoint's state: its training FOV diameter, which a smaller image is resampled to
    dm.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["RetinaDataModule"])
    batch = dm.prepare_whole(batch)
    expected = task.batch_probs(batch)[0].numpy()
    np.testing.assert_allclose(predictor(s.image, s.fov), expected, atol=1e-6)


def test_sliding_window_tta_and_fixed_threshold(ckpt, images, tmp_path, capsys):
    out = tmp_path / "out"
    code = predict_main(
        [
            "--ckpt_path", str(ckpt), "--input", str(images / "eye_a.png"), "--output", str(out),
            "--tile_size", "32", "--stride", "16", "--tta", "--threshold", "0.3",
            "--device", "cpu", "--no_progress",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Inferer(mode='sliding', tile_size=32, stride=16, blend='mean'" in err
    assert "tta=True" in err
    (row,) = _read_csv(out / "predictions.csv")
    assert float(row["threshold"]) == 0.3 and not (out / "eye_a_width.png").exists()


def test_fov_masks_are_matched_by_stem(ckpt, images, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    fov = np.zeros((64, 72), np.uint8)
    fov[8:56, 10:60] = 255  # a rectangle: smaller than the derived circular FOV
    Image.fromarray(fov).save(masks / "eye_a_mask.gif")
    assert match_fov(images / "eye_a.png", masks) == masks / "eye_a_mask.gif"
    assert match_fov(images / "eye_b.jpg", masks) is None
    assert match_fov(Path("01_test.tif"), masks / "eye_a_mask.gif") == masks / "eye_a_mask.gif"
    out = tmp_path / "out"
    argv = ["--ckpt_path", str(ckpt), "--input", str(images), "--output", str(out)]
    assert predict_main([*argv, "--fov", str(masks), "--no_progress"]) == 0
    rows = {r["name"]: r for r in _read_csv(out / "predictions.csv")}
    assert rows["eye_a"]["fov"] == "file" and rows["eye_b"]["fov"] == "derived"
    for kind in ("_mask", "_prob"):
        assert not _png(out / f"eye_a{kind}.png")[fov == 0].any()
    # issue 15 item 7: the images the --fov folder has no mask for are named
    err = capsys.readouterr().err
    assert f"--fov {str(masks)!r} has no mask for 1 of 2 image(s) (eye_b.jpg)" in err
    assert "eye_a.png" not in err.split("has no mask for")[1].split("\n")[0]


def test_an_output_folder_with_earlier_results_is_refused_or_overwritten(
    ckpt, images, tmp_path, capsys
):
    """Issue 15 item 1: a second run into a folder holding results replaced some files and
    left the others beside them. It is refused, naming the folder and the fix; --overwrite
    deletes the earlier results (not the inputs of a folder predicted into itself)."""
    out = tmp_path / "out"
    argv = ["--ckpt_path", str(ckpt), "--output", str(out), "--no_progress"]
    assert predict_main([*argv, "--input", str(images)]) == 0
    assert len(_read_csv(out / "predictions.csv")) == 2
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    second = [*argv, "--input", str(images / "eye_a.png"), "--threshold", "0.5"]
    assert predict_main(second) == 2
    err = capsys.readouterr().err
    assert f"--output {str(out)!r} already holds the results of an earlier run" in err
    assert "--overwrite" in err and "new folder" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # untouched
    bad = [*second, "--overwrite", "--ckpt_path", str(tmp_path / "nope.ckpt")]
    assert predict_main(bad) == 2  # nothing is deleted before the model has loaded
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    capsys.readouterr()
    assert predict_main([*second, "--overwrite"]) == 0
    assert "deleted 7 earlier result file(s)" in capsys.readouterr().err
    (row,) = _read_csv(out / "predictions.csv")
    assert row["name"] == "eye_a" and float(row["threshold"]) == 0.5
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["predictions.csv", *(f"eye_a{k}.png" for k in OUTPUTS)]
    )
    # predicting a folder into itself: its images stay, its earlier maps go
    inside = tmp_path / "inside"
    shutil.copytree(images, inside)
    argv = ["--ckpt_path", str(ckpt), "--input", str(inside), "--output", str(inside)]
    assert predict_main([*argv, "--no_progress", "--overwrite"]) == 0
    assert (inside / "eye_a.png").is_file() and (inside / "eye_b.jpg").is_file()
    assert [r["name"] for r in _read_csv(inside / "predictions.csv")] == ["eye_a", "eye_b"]
    assert predict_main([*argv, "--no_progress"]) == 2


def test_a_12_bit_tiff_gives_the_map_of_its_8_bit_copy(ckpt, images, tmp_path, capsys):
    """Issue 15 item 5: 12-bit data in a 16-bit TIFF was scaled by 65535 (16 grey levels; its
    map matched the 8-bit copy's at Dice 0.58). Now it reads as its 8-bit copy: same maps."""
    import tifffile

    image8 = read_image(images / "eye_a.png")
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(image8).save(folder / "eight.png")
    wide = np.round(image8.astype(np.float64) * 4095 / 255).astype(np.uint16)
    tifffile.imwrite(folder / "twelve.tif", wide, photometric="rgb")
    out = tmp_path / "out"
    argv = ["--ckpt_path", str(ckpt), "--input", str(folder), "--output", str(out)]
    assert predict_main([*argv, "--no_progress"]) == 0, capsys.readouterr().err
    for kind in OUTPUTS:
        np.testing.assert_array_equal(
            _png(out / f"twelve{kind}.png"), _png(out / f"eight{kind}.png")
        )


def test_a_bad_image_is_named_and_the_others_still_written(ckpt, images, tmp_path, capsys):
    folder = tmp_path / "in"
    shutil.copytree(images, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    code = predict_main(
        ["--ckpt_path", str(ckpt), "--input", str(folder), "--output", str(out), "--no_progress"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "1 image(s) failed" in err and "broken.png" in err
    assert [r["name"] for r in _read_csv(out / "predictions.csv")] == ["eye_a", "eye_b"]
    for name in ("eye_a", "eye_b"):
        assert all((out / f"{name}{k}.png").is_file() for k in OUTPUTS)
    assert not list(out.glob("broken*"))


def test_readable_errors(ckpt, images, tmp_path, capsys):
    out = str(tmp_path / "out")

    def run(*argv: str) -> tuple[int, str]:
        code = predict_main([*argv, "--output", out, "--no_progress"])
        return code, capsys.readouterr().err

    code, err = run("--ckpt_path", str(tmp_path / "nope.ckpt"), "--input", str(images))
    assert code == 2 and "nope.ckpt" in err and "no such file" in err
    text = tmp_path / "model.ckpt"
    text.write_text("hello")
    code, err = run("--ckpt_path", str(text), "--input", str(images))
    assert code == 2 and "not a PyTorch checkpoint" in err
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.ckpt")
    code, err = run("--ckpt_path", str(tmp_path / "plain.ckpt"), "--input", str(images))
    assert code == 2 and "not a Lightning checkpoint" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run("--ckpt_path", str(ckpt), "--input", str(empty))
    assert code == 2 and "holds no image file" in err and ".tif" in err and ".ppm" in err
    code, err = run("--ckpt_path", str(ckpt), "--input", str(images), "--stride", "8")
    assert code == 2 and "--stride needs --tile_size" in err
    with pytest.raises(SystemExit):
        run("--ckpt_path", str(ckpt), "--input", str(images), "--threshold", "1.5")
    assert "(0, 1]" in capsys.readouterr().err


class _ColourClassifier(nn.Module):
    """Fixed A/V logits from the un-normalised input: red pixels artery, blue pixels vein,
    grey background (channel order of ``types.py``: 0 background, 1 vein, 2 artery)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (x[:, 0:1] - x[:, 2:3]) * 20
        return torch.cat([6 - d.abs(), -d, d], 1)


def test_av_map_colours_arteries_red_and_veins_blue(tmp_path):
    """Issue 16 item 3: on an image whose classes are known (a model that reads them off the
    pixel colour), the _av.png is red exactly on the arteries, RITE's blue exactly on the
    veins, black elsewhere and outside the FOV; the densities are those of the known map."""
    h, w = 40, 48
    image = np.zeros((h, w, 3), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - 20) ** 2 + (xx - 24) ** 2 <= 18**2
    image[fov] = (100, 100, 100)
    artery = (np.abs(xx - 14) <= 1) | (np.abs(yy - 12) <= 1) & (xx < 24)
    vein = (np.abs(xx - 32) <= 2) & ~artery
    image[artery], image[vein] = (250, 10, 10), (10, 10, 250)  # also outside the FOV
    Image.fromarray(image).save(tmp_path / "eye.png")
    Image.fromarray(fov.astype(np.uint8) * 255).save(tmp_path / "eye_mask.png")
    predictor = Predictor(
        model=_ColourClassifier(),
        preprocess=Preprocess(normalize="none"),
        inferer=Inferer(),
        threshold=0.5,
        num_classes=3,
        target="av",
    )
    out = tmp_path / "out"
    out.mkdir()
    row = predict_image(predictor, tmp_path / "eye.png", out, tmp_path / "eye_mask.png")
    av = _png(out / "eye_av.png")
    expected = np.zeros((h, w, 3), np.uint8)
    expected[artery & fov], expected[vein & fov] = (255, 0, 0), (0, 80, 255)
    np.testing.assert_array_equal(av, expected)
    np.testing.assert_array_equal(_png(out / "eye_mask.png") > 0, (artery | vein) & fov)
    assert row["artery_density"] == pytest.approx((artery & fov).sum() / fov.sum())
    assert row["vein_density"] == pytest.approx((vein & fov).sum() / fov.sum())


def test_av_checkpoint_writes_the_argmax_colours_of_its_probabilities(ckpt, images, tmp_path):
    """A 3-class (background / vein / artery) checkpoint through `retina predict`: the A/V map
    is the argmax class of the predictor's own probabilities on the vessel mask."""
    raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    av = copy.deepcopy(raw)
    av["hyper_parameters"]["model"]["init_args"]["num_classes"] = 3
    av["hyper_parameters"]["loss"] = None
    av["datamodule_hyper_parameters"]["target"] = "av"
    task = SegmentationTask(UNet(3, 3, base_channels=4, depth=2))
    av["state_dict"] = task.state_dict()
    torch.save(av, tmp_path / "av.ckpt")
    out = tmp_path / "out"
    argv = ["--ckpt_path", str(tmp_path / "av.ckpt"), "--input", str(images / "eye_b.jpg")]
    assert predict_main([*argv, "--output", str(out), "--width", "--no_progress"]) == 0
    predictor = load_predictor(tmp_path / "av.ckpt", device="cpu")
    assert predictor.is_av
    image = read_image(images / "eye_b.jpg")
    fov = derive_fov(image)
    probs = predictor(image, fov)
    mask = _png(out / "eye_b_mask.png") > 0
    classes = np.where(mask, probs[1:].argmax(0) + 1, 0)
    expected = np.zeros((*mask.shape, 3), np.uint8)
    expected[classes == ARTERY], expected[classes == VEIN] = (255, 0, 0), (0, 80, 255)
    np.testing.assert_array_equal(_png(out / "eye_b_av.png"), expected)
    (row,) = _read_csv(out / "predictions.csv")
    assert float(row["artery_density"]) == pytest.approx(
        (classes == ARTERY).sum() / fov.sum(), abs=1e-5
    )


def test_dataset_normalisation_uses_stored_statistics_or_warns(ckpt, capsys):
    raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    raw["datamodule_hyper_parameters"]["preprocess"]["normalize"] = "dataset"
    raw.pop("RetinaDataModule", None)  # as a checkpoint written before the statistics were kept
    path = ckpt.parent / "dataset_norm.ckpt"
    torch.save(raw, path)
    fallback = load_predictor(path, device="cpu")
    assert "stores no dataset statistics" in capsys.readouterr().err
    mean, std = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.1, 0.05])
    raw["RetinaDataModule"] = {"dataset_mean": mean, "dataset_std": std}
    torch.save(raw, path)
    stored = load_predictor(path, device="cpu")
    assert "dataset statistics" not in capsys.readouterr().err
    s = generate_fundus(5, 48, 56)
    x = torch.from_numpy(s.image.transpose(2, 0, 1).copy())[None].float() / 255
    expected = stored.inferer(stored.model, (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    np.testing.assert_allclose(stored(s.image, s.fov), expected[0].numpy(), atol=1e-6)
    assert not np.allclose(fallback(s.image, s.fov), expected[0].numpy(), atol=1e-3)


def test_preprocess_is_rebuilt_from_the_datamodule_config(capsys):
    hp = {
        "target": "label",
        "preprocess": {
            "channels": "green",
            "gamma": 1.7,
            "clahe": True,
            "clahe_grid": [4, 4],
            "normalize": "dataset",
        },
    }
    pre, target, stats = preprocess_from({"datamodule_hyper_parameters": hp})
    assert pre == Preprocess(
        channels="green", gamma=1.7, clahe=True, clahe_grid=(4, 4), normalize="dataset"
    )
    assert target == "label" and stats is None
    mean, std = torch.full((1, 1, 1, 1), 0.4), torch.full((1, 1, 1, 1), 0.2)
    ckpt = {
        "datamodule_hyper_parameters": hp,
        "RetinaDataModule": {"dataset_mean": mean, "dataset_std": std},
    }
    assert preprocess_from(ckpt)[2] is not None
    pre, _, _ = preprocess_from({})
    assert pre == Preprocess() and "no datamodule configuration" in capsys.readouterr().err


def test_width_colours_fill_each_vessel_with_its_axis_diameter():
    mask = np.zeros((9, 12), bool)
    mask[3:6, 1:11] = True  # a horizontal vessel 3 px wide
    width_map = np.zeros(mask.shape, np.float32)
    width_map[4, 2:10] = 4.0
    rgb = width_colours(width_map, mask, vmax=4.0)
    assert (rgb[~mask] == 0).all()
    assert (rgb[mask] == rgb[4, 5]).all() and rgb[4, 5].any()  # one colour: one diameter


def test_width_colours_use_the_given_skeleton():
    """A one-pixel vessel has medial-axis diameter 0: with its skeleton given it is coloured
    with 0, not with the diameter of another vessel."""
    mask = np.zeros((12, 12), bool)
    mask[2:7, 1:11] = True  # 5 px wide
    mask[9, 1:11] = True  # 1 px wide
    width_map = np.zeros(mask.shape, np.float32)
    width_map[4, 3:9] = 4.0
    skeleton = width_map > 0
    skeleton[9, 1:11] = True
    rgb = width_colours(width_map, mask, vmax=4.0, skeleton=skeleton)
    assert (rgb[9, 1:11] == rgb[9, 5]).all() and (rgb[9, 5] != rgb[4, 5]).any()
    assert (width_colours(width_map, mask, vmax=4.0)[9, 5] == rgb[4, 5]).all()  # old default


class _FixedProbs:
    """A stand-in for :class:`Predictor`: fixed probabilities and threshold."""

    def __init__(self, probs: np.ndarray, threshold: float) -> None:
        self.probs, self.threshold = probs.astype(np.float32), threshold
        self.is_av = probs.shape[0] == 3

    def __call__(self, image: np.ndarray, fov: np.ndarray) -> np.ndarray:
        return self.probs


def _tube_with_halo(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A horizontal 5-px vessel and a 2-px halo on each side (9 px in all)."""
    core = np.zeros((size, size), bool)
    core[20:25, 6:-6] = True
    halo = np.zeros_like(core)
    halo[18:27, 6:-6] = True
    return core, halo & ~core


def _inputs(tmp_path: Path, size: int = 48) -> tuple[Path, Path]:
    image, fov = tmp_path / "eye.png", tmp_path / "eye_mask.png"
    Image.fromarray(np.full((size, size, 3), 120, np.uint8)).save(image)
    Image.fromarray(np.full((size, size), 255, np.uint8)).save(fov)
    return image, fov


def test_width_segmentation_is_the_vessel_probability_at_the_threshold():
    """One rule for every map (issue 22): vessel where the vessel probability (sigmoid, or one
    minus background) is >= the threshold; A/V vessel pixels take the likelier foreground."""
    fov = np.ones((1, 4), bool)
    fov[0, 3] = False
    classes, vessel = width_segmentation(np.array([[[0.2, 0.5, 0.7, 0.9]]]), fov, 0.5)
    assert vessel.tolist() == [[False, True, True, False]] and classes.tolist() == [[0, 1, 1, 0]]
    classes, vessel = width_segmentation(np.array([[[0.2, 0.5, 0.7, 0.9]]]), fov, 0.15)
    assert vessel.tolist() == [[True, True, True, False]]
    probs = np.array([[0.6, 0.45, 0.2, 0.1], [0.3, 0.3, 0.7, 0.2], [0.1, 0.25, 0.1, 0.7]])
    classes, vessel = width_segmentation(probs[:, None, :], fov, 0.5)
    # pixel 1: vessel probability 1 - 0.45 = 0.55 >= 0.5, vein (0.3) likelier than artery
    assert classes.tolist() == [[0, 1, 1, 0]] and vessel.tolist() == [[False, True, True, False]]
    classes, vessel = width_segmentation(probs[:, None, :], fov, 0.6)
    assert classes.tolist() == [[0, 0, 1, 0]]


@pytest.mark.parametrize("threshold", [0.2, 0.5])
def test_widths_are_measured_on_the_written_mask(tmp_path, threshold):
    """A binary model: the halo (p = 0.3) is vessel at threshold 0.2 and not at 0.5; the
    mask, the width map and the width columns change together (one threshold, issue 22)."""
    core, halo = _tube_with_halo()
    prob = np.where(core, 0.9, np.where(halo, 0.3, 0.01))[None]
    image, fov = _inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    row = predict_image(
        _FixedProbs(prob, threshold), image, out, fov, width=True, pixel_size_um=12.5
    )
    vessel = core | halo if threshold < 0.3 else core
    np.testing.assert_array_equal(_png(out / "eye_mask.png") > 0, vessel)
    assert row["width_rule"] == f">={threshold:.4g}"
    assert row["width_mean_px"] == pytest.approx(vessel_widths(vessel).mean)
    assert row["width_mean_um"] == pytest.approx(12.5 * vessel_widths(vessel).mean)
    np.testing.assert_array_equal(_png(out / "eye_width.png").any(axis=-1), vessel)
    if threshold < 0.3:
        assert row["width_mean_px"] > vessel_widths(core).mean + 3.0


def test_av_widths_are_measured_on_the_written_av_map(tmp_path):
    """An A/V model: the halo (background 0.45, artery 0.35) is vessel at threshold 0.3 and
    artery in ``_av.png``; the artery widths are those of that map, core and halo."""
    core, halo = _tube_with_halo()
    vein = np.roll(core, 14, axis=0) | np.roll(core, 15, axis=0)  # a 6-px vein below
    probs = np.zeros((3, *core.shape), np.float32)
    probs[0] = 0.9
    probs[:, halo] = np.array([0.45, 0.2, 0.35])[:, None]
    probs[:, core] = np.array([0.1, 0.1, 0.8])[:, None]
    probs[:, vein] = np.array([0.1, 0.8, 0.1])[:, None]
    probs[1:, ~(core | halo | vein)] = 0.05
    image, fov = _inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    row = predict_image(_FixedProbs(probs, 0.3), image, out, fov, width=True)
    assert (_png(out / "eye_av.png")[halo] == (255, 0, 0)).all()  # artery at the threshold
    assert row["width_rule"] == ">=0.3"
    artery = core | halo
    expected = av_widths(np.select([artery, vein], [ARTERY, VEIN], 0).astype(np.uint8))
    assert row["artery_width_mean_px"] == pytest.approx(expected["artery"].mean)
    assert row["vein_width_mean_px"] == pytest.approx(expected["vein"].mean)
    assert row["width_mean_px"] == pytest.approx(vessel_widths(artery | vein).mean)
    # `retina data widths --pred` reads this _av.png: the same classes the widths came from
    from retina_lightning.measure import find_prediction, read_prediction

    labels, is_av = read_prediction(find_prediction(out, "eye"))
    assert is_av
    np.testing.assert_array_equal(labels, np.select([artery, vein], [ARTERY, VEIN], 0))


@pytest.mark.real_data
@needs("DRIVE")
def test_predict_on_drive_test_images_with_their_fov_masks(ckpt, tmp_path, capsys):
    drive = DATA_ROOT / "DRIVE" / "test"
    images, masks = tmp_path / "images", tmp_path / "mask"
    images.mkdir()
    masks.mkdir()
    for n in ("01", "02"):
        shutil.copy(drive / "images" / f"{n}_test.tif", images)
        shutil.copy(drive / "mask" / f"{n}_test_mask.gif", masks)
    out = tmp_path / "out"
    argv = ["--ckpt_path", str(ckpt), "--input", str(images), "--output", str(out)]
    code = predict_main([*argv, "--fov", str(masks), "--no_progress"])
    assert code == 0, capsys.readouterr().err
    rows = _read_csv(out / "predictions.csv")
    assert [(r["name"], r["height"], r["width"], r["fov"]) for r in rows] == [
        ("01_test", "584", "565", "file"),
        ("02_test", "584", "565", "file"),
    ]
    for n in ("01", "02"):
        fov = read_mask(masks / f"{n}_test_mask.gif").astype(bool)
        for kind in OUTPUTS:
            with Image.open(out / f"{n}_test{kind}.png") as im:
                assert im.size == (565, 584)
        assert not _png(out / f"{n}_test_mask.png")[~fov].any()


@pytest.mark.parametrize("fov_diameter", [None, 40])
def test_predict_loop_gives_the_probabilities_retina_test_scores(
    ckpt, tmp_path, monkeypatch, fov_diameter
):
    """Issue 12: `retina predict` (Lightning's predict loop over a FolderDataModule, written by
    the MapWriter callback) and `retina test` give the same probabilities, to 1e-6, for the
    same images read from disk, at the native scale and resampled to a working FOV diameter."""
    from retina_lightning.cli import main

    seen: dict[str, np.ndarray] = {}
    batch_probs = SegmentationTask.batch_probs

    def record(self, batch):
        probs = batch_probs(self, batch)
        for name, p in zip(batch["name"], probs, strict=True):
            seen[name] = p.detach().float().cpu().numpy()
        return probs

    monkeypatch.setattr(SegmentationTask, "batch_probs", record)
    scale = [] if fov_diameter is None else [f"--data.init_args.fov_diameter={fov_diameter}"]
    cli = main(
        [
            "test",
            "--config",
            str(REPO / "configs/synthetic/unet.yaml"),
            *TINY,
            "--data.init_args.dataset.init_args.num_test=2",
            *scale,
            "--ckpt_path",
            str(ckpt),
            "--runs_dir",
            str(tmp_path / "runs"),
        ]
    )
    tested = dict(seen)
    samples = cli.datamodule.samples.test
    assert sorted(tested) == sorted(s.name for s in samples) and len(samples) == 2
    folder, masks = tmp_path / "images", tmp_path / "fov"
    folder.mkdir()
    masks.mkdir()
    for s in samples:  # lossless PNGs: predict reads back exactly the tested pixels
        Image.fromarray(s.image).save(folder / f"{s.name}.png")
        Image.fromarray(s.fov.astype(np.uint8) * 255).save(masks / f"{s.name}_mask.png")
    seen.clear()
    out = tmp_path / "out"
    argv = ["--ckpt_path", str(ckpt), "--input", str(folder), "--fov", str(masks)]
    argv += ["--output", str(out), "--save_probs", "--no_progress", "--device", "cpu"]
    argv += ["--fov_diameter", "native" if fov_diameter is None else str(fov_diameter)]
    assert predict_main(argv) == 0
    assert sorted(seen) == sorted(tested)  # the predict loop went through the task
    for s in samples:
        written = np.load(out / f"{s.name}_probs.npy")
        assert written.shape == tested[s.name].shape == (1, *s.fov.shape)
        np.testing.assert_allclose(written, tested[s.name] * s.fov, atol=1e-6, rtol=0)
        assert not (written[:, ~s.fov]).any()


def test_best_and_last_name_the_latest_run_of_the_config(ckpt, images, tmp_path, capsys):
    """`retina predict --ckpt_path last --config X` (as `retina test`): the latest run's
    last.ckpt; an experiment without runs is one line naming where it looked."""
    runs = ckpt.parents[4]
    config = str(REPO / "configs/synthetic/unet.yaml")
    argv = ["--input", str(images / "eye_a.png"), "--no_progress", "--runs_dir", str(runs)]
    code = predict_main(
        ["--ckpt_path", "last", "--config", config, "--output", str(tmp_path / "a"), *argv]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"--ckpt_path last -> {ckpt}" in err
    code = predict_main(
        ["--ckpt_path", "best", "--experiment", "nothing/here", "--output", str(tmp_path / "b")]
        + argv
    )
    err = capsys.readouterr().err
    assert code == 2 and "nothing/here" in err and len(err.strip().splitlines()) == 1
    assert (
        "--config" in build_parser().format_help() and "--runs_dir" in build_parser().format_help()
    )
