"""The benchmark scripts: --help, their helpers, and tiny end-to-end runs that write tables.

Nothing here asserts a timing: only shapes, columns, equalities and bookkeeping.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SCRIPTS = ("bench_data", "bench_inference", "bench_scaling", "bench_accuracy")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The scripts' --threads sets torch's global thread count: give it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def bench(name: str):
    return importlib.import_module(f"benchmarks.{name}")


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench(script).main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--tiny", "--device", "--out-dir", "--threads"):
        assert option in out
    assert f"{script}.py" in out


# ----------------------------------------------------------------------------- common


def test_time_fn_runs_warmup_and_repeats():
    from benchmarks.common import time_fn

    calls = []
    timing = time_fn(lambda: calls.append(1), warmup=2, repeat=5)
    assert len(calls) == 7
    assert timing.repeat == 5
    assert 0 <= timing.min <= timing.median
    with pytest.raises(ValueError, match="repeat"):
        time_fn(lambda: None, repeat=0)


def test_write_table_markdown_and_csv(tmp_path):
    from benchmarks.common import Table, fmt, read_table, write_table

    table = Table("demo", "A demo", ["name", "value", "count"], notes=["a note"])
    table.add(name="a", value=0.123456, count=12345)
    table.add(name="b|c", value=None, count=3)
    with pytest.raises(KeyError, match="nope"):
        table.add(nope=1)
    info = {"cpu": "Test CPU", "gpu": "none"}
    md, csv_path = write_table(table, tmp_path, "python x.py --quick", info)
    text = md.read_text()
    assert text.startswith("# A demo\n")
    assert "Command: `python x.py --quick`" in text and "- cpu: Test CPU" in text
    assert "| name | value | count |" in text
    assert "| a | 0.1235 | 12,345 |" in text
    assert "| b/c | - | 3 |" in text and "- a note" in text
    assert csv_path.read_text().startswith("# A demo\n# command: python x.py --quick\n")
    rows = read_table(csv_path)
    assert rows == [
        {"name": "a", "value": "0.123456", "count": "12345"},
        {"name": "b|c", "value": "", "count": "3"},
    ]
    assert (fmt(True), fmt(math.nan), fmt(2.5e-5), fmt(7)) == ("yes", "-", "2.500e-05", "7")


def test_run_settings_cpu_always_first():
    from benchmarks.common import autocast, run_settings

    settings = run_settings("cpu")
    assert settings == [(torch.device("cpu"), "fp32")]
    auto = run_settings("auto")
    assert auto[0] == (torch.device("cpu"), "fp32")
    assert len(auto) == (3 if torch.cuda.is_available() else 1)
    with pytest.raises(ValueError, match="precision"):
        autocast(torch.device("cpu"), "fp8")


def test_machine_info_names_cpu_and_torch():
    from benchmarks.common import machine_info

    info = machine_info()
    assert info["torch"].startswith(torch.__version__)
    assert info["cpu"] and "cores" in info
    assert ("none" in info["gpu"]) == (not torch.cuda.is_available())


# ------------------------------------------------------------------------ bench_data


def test_conventional_patches_match_the_device_pipeline_shapes():
    from retina_lightning.data import SyntheticFundus

    bd = bench("bench_data")
    samples = SyntheticFundus(num_train=2, num_test=0, height=64, width=64, seed=1).load("training")
    dataset = bd.ConventionalPatches(samples, 32, bd.AUGMENT, length=8, seed=0)
    assert dataset.context == 46  # ceil(32 * sqrt(2) / 2) * 2: room for the rotation
    image, label, fov = dataset[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.shape == fov.shape == (32, 32)
    assert set(label.unique().tolist()) <= {0, 1} and fov.dtype == torch.bool
    again = dataset[3]
    assert torch.equal(image, again[0]) and torch.equal(label, again[1])  # seeded per index
    assert not torch.equal(image, dataset[4][0])


def test_bench_data_tiny_writes_both_tables(tmp_path):
    bd = bench("bench_data")
    paths = bd.main(["--tiny", "--threads", "1", "--workers", "0", "--out-dir", str(tmp_path)])
    from benchmarks.common import read_table

    names = sorted(p.name for p in paths)
    assert names == [
        "data_throughput_tiny.csv",
        "data_throughput_tiny.md",
        "data_wait_tiny.csv",
        "data_wait_tiny.md",
    ]
    rows = read_table(tmp_path / "data_throughput_tiny.csv")
    assert list(rows[0]) == [
        "pipeline",
        "device",
        "workers",
        "ms/batch (min)",
        "ms/batch (median)",
        "patches/s",
        "vs best DataLoader",
    ]
    assert [r["device"] for r in rows] == ["cpu", "cpu"]
    assert rows[0]["pipeline"].startswith("device sampler")
    assert float(rows[1]["vs best DataLoader"]) == 1.0  # the only DataLoader row is the best
    for r in rows:
        assert float(r["ms/batch (min)"]) <= float(r["ms/batch (median)"])
    wait = read_table(tmp_path / "data_wait_tiny.csv")
    assert list(wait[0]) == [
        "pipeline",
        "device",
        "precision",
        "workers",
        "data ms/step",
        "step ms",
        "waiting for data",
    ]
    for r in wait:
        share = float(r["waiting for data"])
        assert 0.0 <= share <= 1.0
        assert share == pytest.approx(float(r["data ms/step"]) / float(r["step ms"]))


# ------------------------------------------------------------------- bench_inference


def test_tile_grid_of_drive():
    bi = bench("bench_inference")
    # 584 x 565 padded to 128 + 3k: ceil(456 / 3) + 1 = 153 rows, ceil(437 / 3) + 1 = 147 cols
    assert bi.fine_grid(584, 565, 128, 3) == (153, 147)
    assert bi.fine_grid(584, 565, 128, 64) == (9, 8)
    assert bi.fine_grid(100, 100, 128, 64) == (1, 1)


def test_naive_loop_equals_batched_sliding_window():
    from retina_lightning.inference import Inferer
    from retina_lightning.models import UNet

    bi = bench("bench_inference")
    model = UNet(3, 1, base_channels=4, depth=2).eval()
    image = torch.randn(2, 3, 45, 38)
    batched = Inferer("sliding", tile_size=16, stride=8, batch_size=5)(model, image)
    naive = bi.naive_sliding_window(model, image, tile=16, stride=8)
    assert naive.shape == batched.shape == (2, 1, 45, 38)
    assert torch.allclose(naive, batched, atol=1e-5, rtol=0)


def test_bench_inference_tiny_writes_three_tables(tmp_path):
    from benchmarks.common import read_table

    bi = bench("bench_inference")
    bi.main(
        [
            "--tiny",
            "--threads",
            "1",
            "--models",
            "patch2image_light,dpn",
            "--disk-model",
            "patch2image_light",
            "--out-dir",
            str(tmp_path),
        ]
    )
    speed = read_table(tmp_path / "inference_speed_tiny.csv")
    assert list(speed[0]) == [
        "model",
        "config",
        "params",
        "paper params",
        "device",
        "precision",
        "whole s/image",
        "sliding 16 s/image",
        "sliding 16 how",
        "stride 3 s/image",
        "stride 3 tiles",
        "stride 3 how",
        "paper s/image",
    ]
    assert [r["model"] for r in speed] == ["Light (patch2image)", "DPN"]
    assert [int(r["params"]) for r in speed] == [8889, 95988]  # 004 and 002's counts
    assert all(int(r["stride 3 tiles"]) == 12 * 12 for r in speed)  # (64 - 32) / 3 -> 12 x 12
    assert speed[0]["stride 3 how"] == "extrapolated from 8 tiles"
    disk = read_table(tmp_path / "inference_disk_tiny.csv")
    assert disk[0]["images"] == "2"
    assert float(disk[0]["images/s"]) == pytest.approx(1 / float(disk[0]["s/image"]))
    naive = read_table(tmp_path / "inference_sliding_vs_naive_tiny.csv")
    assert naive[0]["tiles"] == "9" and naive[0]["same output"] == "True"
    assert float(naive[0]["max abs diff"]) <= 1e-5


# --------------------------------------------------------------------- bench_scaling


def test_scaling_child_measures_one_setting():
    bs = bench("bench_scaling")
    setting = bs.Setting("train patches", "tiny", 48, 40, "cpu", "fp32", 1, "tiny")
    result = bs.run_child(setting)
    assert set(result) == {
        "seconds_min",
        "seconds_median",
        "peak_mib",
        "baseline_mib",
        "rss_peak_mib",
    }
    assert 0 < result["seconds_min"] <= result["seconds_median"]
    assert result["peak_mib"] >= result["baseline_mib"] > 0


# --------------------------------------------------------------------- bench_accuracy


def test_budget_and_arguments(tmp_path, monkeypatch):
    ba = bench("bench_accuracy")
    from benchmarks.reference import METHODS, Method

    assert ba.max_time(20) == "00:00:20:00"
    assert ba.max_time(0.5) == "00:00:00:30"
    assert ba.max_time(90) == "00:01:30:00"
    assert ba.budget_tag(1) == "1min" and ba.budget_tag(0.5) == "0p5min"

    monkeypatch.delenv("RETINA_DATA_ROOT", raising=False)
    assert ba.drive_root(None) is None
    (tmp_path / "DRIVE" / "training").mkdir(parents=True)
    assert ba.drive_root(str(tmp_path)) is None  # no test/ yet
    (tmp_path / "DRIVE" / "test").mkdir()
    assert ba.drive_root(str(tmp_path)) == (tmp_path / "DRIVE").resolve()
    assert ba.drive_root(str(tmp_path / "DRIVE")) == (tmp_path / "DRIVE").resolve()
    monkeypatch.setenv("RETINA_DATA_ROOT", str(tmp_path))
    assert ba.drive_root(None) == (tmp_path / "DRIVE").resolve()

    args, note = ba.method_arguments(METHODS["dpn"], tmp_path / "DRIVE")
    assert args == [
        "--config",
        str(REPO / "configs/drive/dpn.yaml"),
        f"--data.init_args.dataset.init_args.root={tmp_path / 'DRIVE'}",
    ]
    assert note == "configs/drive/dpn.yaml"
    args, _ = ba.method_arguments(METHODS["dpn"], None)
    assert "--data.init_args.dataset.class_path=retina_lightning.data.SyntheticFundus" in args

    missing = Method("no_such_config", "X", "retina_lightning.models.LightNet", {"in_channels": 1})
    args, note = ba.method_arguments(missing, tmp_path / "DRIVE")
    assert args[:2] == ["--config", str(REPO / "configs/synthetic/unet.yaml")]
    assert "--model.init_args.model.class_path=retina_lightning.models.LightNet" in args
    assert "--model.init_args.model.init_args.in_channels=1" in args
    assert "--data.init_args.preprocess.channels=gray" in args
    assert "--data.init_args.dataset.class_path=retina_lightning.data.DRIVE" in args
    assert "missing" in note


def test_recipe_steps_and_f1_at_the_papers_operating_point():
    ba = bench("bench_accuracy")
    from benchmarks.reference import METHODS, Method

    assert ba.recipe_steps(METHODS["iternet"]) == "12,400"  # 200 epochs x 62 steps
    assert ba.recipe_steps(METHODS["dpn"]) == "100,000"  # 002's 100k iterations
    assert (
        ba.recipe_steps(METHODS["patch2image_light"]) == "<= 199,800 (early stopping)"
    )  # 300 x 666
    assert ba.recipe_steps(Method("no_such_config", "X", "m.M")) is None

    pooled = {"auroc": 0.97, "f1@opt": 0.70, "f1@0.5": 0.80, "acc@0.5": 0.95}
    report = {"pooled": pooled, "steps": 10, "epochs": 1, "fit_s": 1.0}
    report |= {"thresholds": {"opt": 0.1}, "config": "c.yaml", "num_parameters": 1}
    light = ba.ours_row(METHODS["patch2image_light"], report, "ours", compare=True)
    assert light["F1 - paper"] == pytest.approx(0.80 - 0.7949)  # 004 thresholds at 0.5
    dpn = ba.ours_row(METHODS["dpn"], report, "ours", compare=True)
    assert dpn["F1 - paper"] == pytest.approx(0.70 - 0.8293)  # 002 at the ROC optimum
    assert (light["Acc@0.5"], light["F1@0.5"]) == (0.95, 0.80)


@pytest.mark.slow
def test_bench_accuracy_tiny_fit_and_test(tmp_path, monkeypatch):
    from benchmarks.common import read_table

    ba = bench("bench_accuracy")
    # 30 steps on high-contrast, lesion-free images, so that the AUROC shows the model learned
    # (the plain --tiny recipe, 2 steps, scores 0.46 = chance; it stays fast for smoke runs)
    learnable = [
        "--data.init_args.dataset.init_args.vessel_contrast=2.0",
        "--data.init_args.dataset.init_args.noise_std=0.01",
        "--data.init_args.dataset.init_args.lesions=0.0",
        "--data.init_args.steps_per_epoch=30",
        "--data.init_args.batch_size=4",
    ]
    monkeypatch.setattr(ba, "TINY_OVERRIDES", [*ba.TINY_OVERRIDES, *learnable])
    ba.main(
        [
            "--tiny",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--methods",
            "dpn",
            "--out-dir",
            str(tmp_path / "results"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    rows = read_table(tmp_path / "results" / "accuracy_tiny.csv")
    assert [r["method"] for r in rows] == ["DPN", "2nd human observer"]
    dpn = rows[0]
    assert dpn["params"] == "95988" and dpn["train steps"] == "30" and dpn["epochs"] == "1.0"
    for key in ("Se", "Sp", "Acc", "AUC", "F1", "Conn", "threshold"):
        assert 0.0 <= float(dpn[key]) <= 1.0
    # learned: 0.81 here; a table of another run, misaligned labels or an untrained model: ~0.5
    assert float(dpn["AUC"]) > 0.7, dpn["AUC"]
    assert dpn["AUC - paper"] == ""  # not DRIVE: no comparison with the paper
    tests = list((tmp_path / "runs" / "bench_accuracy" / "tiny" / "dpn").glob("*/test/"))
    assert len(tests) == 1 and (tests[0] / "metrics.json").is_file()
    assert (tests[0] / ba.BOOKKEEPING).is_file()
    assert np.isfinite(float(rows[1]["F1"]))

    # --rebuild: the same table from the saved run, nothing trained
    args = ["--tiny", "--methods", "dpn", "--runs-dir", str(tmp_path / "runs"), "--rebuild"]
    ba.main([*args, "--out-dir", str(tmp_path / "rebuilt")])
    assert read_table(tmp_path / "rebuilt" / "accuracy_tiny.csv") == rows
    assert len(list((tmp_path / "runs" / "bench_accuracy" / "tiny" / "dpn").iterdir())) == 1


# -------------------------------------------------------------------- bench_training


def test_bench_training_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench("bench_training").main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--tiny", "--device", "--out-dir", "--threads", "--models"):
        assert option in out
    for option in ("--precisions", "--channels-last", "--compile", "--name"):
        assert option in out


def test_training_recipe_from_the_drive_config():
    from retina_lightning.losses import DeepSupervisionLoss

    bt = bench("bench_training")
    from benchmarks.reference import METHODS

    dpn = bt.load_recipe(METHODS["dpn"])
    assert isinstance(dpn.loss, DeepSupervisionLoss)  # built from the YAML, nested loss too
    assert dpn.optimizer[0] is torch.optim.Adam and dpn.optimizer[1]["weight_decay"] == 5e-4
    assert (dpn.patch, dpn.batch, dpn.in_channels) == (512, 1, 3)
    assert bt.step_shape(dpn, bt.SCALES["full"]) == (512, 1)
    assert bt.step_shape(dpn, bt.SCALES["tiny"]) == (32, 1)
    unet = bt.load_recipe(METHODS["unet"])
    assert bt.step_shape(unet, bt.SCALES["quick"]) == (unet.patch, 8)
    assert 1 <= bt.physical_cores() <= (os.cpu_count() or 1)


def test_bench_training_tiny_writes_the_table(tmp_path):
    from benchmarks.common import read_table
    from retina_lightning.precision import default_precision

    bt = bench("bench_training")
    paths = bt.main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--models",
            "patch2image_light,dpn",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert sorted(p.name for p in paths) == [
        "training_throughput_tiny.csv",
        "training_throughput_tiny.md",
    ]
    rows = read_table(tmp_path / "training_throughput_tiny.csv")
    assert list(rows[0]) == bt.COLUMNS
    assert [(r["model"], r["precision"]) for r in rows] == [
        ("Light (patch2image)", "32-true"),
        ("Light (patch2image)", "bf16-mixed"),
        ("DPN", "32-true"),
        ("DPN", "bf16-mixed"),
    ]
    from benchmarks.reference import METHODS

    recipe = [bt.load_recipe(METHODS[k]).batch for k in ("patch2image_light", "dpn")]
    assert [int(r["recipe batch"]) for r in rows] == [recipe[0], recipe[0], 1, 1]  # DPN: 1
    assert [int(r["batch"]) for r in rows] == [min(recipe[0], 2)] * 2 + [1, 1]
    for r in rows:
        assert r["device"] == "cpu" and r["variant"] == "eager" and not r["note"]
        assert 0 < float(r["ms/step (min)"]) <= float(r["ms/step (median)"])
        assert float(r["patches/s"]) == pytest.approx(
            int(r["batch"]) / (float(r["ms/step (median)"]) / 1e3)
        )
        assert float(r["vs 32-true"]) > 0
        assert r["suite default"] == str(r["precision"] == default_precision("cpu"))
    assert [float(r["vs 32-true"]) for r in rows[::2]] == [1.0, 1.0]
    text = (tmp_path / "training_throughput_tiny.md").read_text()
    assert "- threads: 1 intra-op threads (--threads)" in text
    assert "--tiny --device cpu --threads 1 --models patch2image_light,dpn" in text  # command


# ------------------------------------------------------------------------ gpu_check


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_gpu_check_drive_step_skips_without_drive(tmp_path, monkeypatch, capsys):
    gc = _gpu_check()
    monkeypatch.delenv("RETINA_DATA_ROOT", raising=False)
    args = gc.parse_args(["--results-dir", str(tmp_path)])
    assert not args.quick and args.results_dir == tmp_path
    check = gc.Check(args)
    step = check.drive()
    assert step.status.startswith("skipped: RETINA_DATA_ROOT is unset")
    assert check.drive_reserve() == 0.0
    assert "drive: skipped" in capsys.readouterr().out
    monkeypatch.setenv("RETINA_DATA_ROOT", str(tmp_path))
    for sub in ("training", "test"):
        (tmp_path / "DRIVE" / sub).mkdir(parents=True)
    assert check.drive_root() == (tmp_path / "DRIVE").resolve()
    assert check.drive_reserve() > 0  # the earlier steps leave time for the DRIVE step


@pytest.mark.slow
@pytest.mark.skipif(
    bool(os.environ.get("RETINA_GPU_CHECK")), reason="inside a gpu-check run already"
)
def test_gpu_check_quick_mode(tmp_path, monkeypatch):
    """`make gpu-check QUICK=1`'s Python part, on a CPU too: the CUDA tests (skipped without
    a GPU) with their table, the training benchmark, the summary and the $OUT export. The
    data / inference / DRIVE steps are left out here (their scripts' tiny runs are tested
    above; `make gpu-check QUICK=1` runs them)."""
    gc = _gpu_check()
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("OUT", str(out))
    results = tmp_path / "results"
    argv = ["--quick", "--threads", "1", "--results-dir", str(results)]
    code = gc.main([*argv, "--skip", "data,inference,drive"])
    assert code == 0
    from benchmarks.common import read_table

    steps = read_table(results / "gpu_check_summary.csv")
    status = {r["step"]: r["status"] for r in steps}
    assert list(status) == ["tests", "training", "data", "inference", "drive", "compile"]
    assert status["tests"].startswith("ok (") and status["training"] == "ok"
    assert status["data"] == "skipped: --skip" and status["compile"].startswith("skipped in")
    tests = read_table(results / "gpu_tests_quick.csv")
    outcomes = {r["test"].split("::")[-1]: r["outcome"] for r in tests}
    assert outcomes["test_run_settings_cpu_always_first"] == "passed"
    gpu_tests = [r for r in tests if r["test"].startswith("test_gpu::")]
    assert gpu_tests  # every CUDA test is listed: skipped without a GPU, run with one
    expected = "passed" if torch.cuda.is_available() else "skipped"
    assert any(r["outcome"] == expected for r in gpu_tests)
    training = read_table(results / "gpu_training_throughput_tiny.csv")
    assert {r["model"] for r in training} == {"Light (patch2image)", "DPN"}
    assert all(float(r["patches/s"]) > 0 for r in training)
    summary = (out / "gpu_check_summary.md").read_text()
    assert "| tests |" in summary and "CUDA tests" in summary
    import tarfile

    with tarfile.open(out / "gpu_check_results.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"gpu_tests_quick.md", "gpu_training_throughput_tiny.csv"} <= names


def test_cross_dataset_commands_and_table(tmp_path, monkeypatch):
    """benchmarks/cross_dataset.py: one `retina fit` per cell (method config + data fragment,
    fov_diameter only for the 540 runs) and the native / fov 540 table with the AUROC gain."""
    cross = bench("cross_dataset")
    for folder in ("DRIVE", "CHASE_DB1"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv("RETINA_DATA_ROOT", str(tmp_path))
    native = cross.fit_command("r2unet", "chase_db1", "native", tmp_path / "runs")
    at_540 = cross.fit_command("r2unet", "chase_db1", "540", tmp_path / "runs")
    assert native[:6] == [
        "retina",
        "fit",
        "--config",
        "configs/drive/r2unet.yaml",
        "--config",
        "configs/data/chase_db1_20_8.yaml",
    ]
    assert not any("fov_diameter" in a for a in native)
    assert "--data.init_args.fov_diameter=540" in at_540
    assert f"--data.init_args.dataset.init_args.root={tmp_path / 'CHASE_DB1'}" in at_540
    assert "--experiment=cross/r2unet/chase_db1_540" in at_540
    rows = [
        {"method": "r2unet", "resolution": res, "train": "drive", "test": "chase_db1",
         "in_domain": False, "auroc": auc, "f1@opt": 0.6, "f1@0.5": 0.5, "checkpoint": "x"}
        for res, auc in (("native", 0.88), ("540", 0.93))
    ]  # fmt: skip
    text = cross.write(rows, {"chase_db1": {"se": 0.83, "sp": 0.97, "f1": 0.7984}}, tmp_path)
    assert "| r2unet | drive -> chase_db1 | 0.8800 | 0.9300 | +0.0500 | 0.6000 | 0.6000 |" in text
    assert "| chase_db1 | 0.8300 | 0.9700 | 0.7984 |" in text
    assert (tmp_path / "cross_dataset.csv").read_text().count("\n") == 3
