"""Leaderboards from result folders written by hand in the task's format: mean +- std over
seeds, reported rows, sorting, Markdown / CSV, paired tests against scipy, bootstrap CIs."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import wilcoxon

from retina_lightning.leaderboard import (
    CrossDatasetMatrix,
    LeaderboardError,
    collect_runs,
    leaderboard_main,
    leaderboard_table,
    paired_comparison,
    per_image_rows,
)
from retina_lightning.reference import PAPERS, REPORTED, reported

REPO = Path(__file__).resolve().parents[1]
CONFUSION = ("se", "sp", "acc", "precision", "f1", "jaccard")
IMAGES = [f"{i:02d}_test" for i in range(1, 7)]


def _report(auroc: float, f1: float, per_image_f1: list[float], second: bool) -> dict:
    """A metrics.json as SegmentationTask.on_test_epoch_end writes it."""
    pooled = {"auroc": auroc, "auprc": auroc - 0.1}
    for t in ("0.5", "opt"):
        for m in CONFUSION:
            pooled[f"{m}@{t}"] = f1 if m == "f1" else 0.9
    mean = {k: v for k, v in pooled.items()}
    mean["f1@opt"] = float(np.mean(per_image_f1))
    report = {
        "model": "UNet",
        "num_parameters": 1234,
        "thresholds": {"0.5": 0.5, "opt": 0.41},
        "metrics_in_fov": True,
        "num_images": len(per_image_f1),
        "pooled": pooled,
        "per_image_mean": mean,
        "per_image_std": {k: 0.01 for k in mean},
    }
    if second:
        report["second_observer"] = {
            "se": 0.7746,
            "sp": 0.9725,
            "acc": 0.9473,
            "precision": 0.80,
            "f1": 0.7891,
            "jaccard": 0.65,
        }
    return report


def _config(seed: int, dataset: str = "DRIVE", split: dict | None = None) -> dict:
    """The parts of a run's config.yaml (LightningCLI's saved config) that identify it."""
    return {
        "seed_everything": seed,
        "model": {
            "class_path": "retina_lightning.tasks.SegmentationTask",
            "init_args": {"model": {"class_path": "retina_lightning.models.UNet"}},
        },
        "data": {
            "class_path": "retina_lightning.data.RetinaDataModule",
            "init_args": {
                "dataset": {"class_path": f"retina_lightning.data.{dataset}"},
                "split": split or {"class_path": "retina_lightning.data.OfficialSplit"},
            },
        },
        "experiment": None,
        "runs_dir": "runs",
    }


def write_run(
    runs: Path,
    experiment: str,
    stamp: str,
    seed: int,
    auroc: float,
    f1: float,
    per_image_f1: list[float],
    test_dir: str = "test",
    second: bool = True,
    dataset: str = "DRIVE",
) -> Path:
    run = runs / experiment / stamp
    (run / test_dir).mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(_config(seed, dataset)))
    report = _report(auroc, f1, per_image_f1, second)
    (run / test_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    cols = ["image", "auroc", *(f"{m}@{t}" for t in ("0.5", "opt") for m in CONFUSION)]
    lines = [",".join(cols)]
    for name, v in zip(IMAGES, per_image_f1):
        values = {c: 0.5 for c in cols[1:]}
        values["f1@opt"] = v
        values["precision@0.5"] = math.nan
        lines.append(
            ",".join(
                [name] + ["" if math.isnan(values[c]) else f"{values[c]:.6f}" for c in cols[1:]]
            )
        )
    (run / test_dir / "per_image.csv").write_text("\n".join(lines) + "\n")
    return run


DPN_AUROC = [0.970, 0.980, 0.990]
UNET_AUROC = [0.960, 0.975]
DPN_F1 = [[0.80, 0.82, 0.79, 0.85, 0.81, 0.83], [0.81, 0.83, 0.80, 0.84, 0.80, 0.84]]
UNET_F1 = [[0.78, 0.80, 0.79, 0.82, 0.80, 0.80], [0.77, 0.81, 0.78, 0.83, 0.79, 0.81]]


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for k, a in enumerate(DPN_AUROC):
        write_run(runs, "drive/dpn", f"2026010{k}-000000", k, a, 0.82 + k / 100, DPN_F1[k % 2])
    for k, a in enumerate(UNET_AUROC):
        write_run(runs, "drive/unet", f"2026010{k}-000000", k, a, 0.80, UNET_F1[k])
    return runs


def test_collect_runs_identifies_method_dataset_seed(runs_dir: Path):
    runs = collect_runs([runs_dir])
    assert sorted((r.method, r.seed) for r in runs) == [
        ("dpn", 0),
        ("dpn", 1),
        ("dpn", 2),
        ("unet", 0),
        ("unet", 1),
    ]
    assert {r.dataset for r in runs} == {"drive"} and {r.protocol for r in runs} == {"official"}
    assert {r.experiment for r in runs} == {"drive/dpn", "drive/unet"}
    dpn0 = next(r for r in runs if r.method == "dpn" and r.seed == 0)
    assert dpn0.metrics["auroc"] == 0.970 and dpn0.num_parameters == 1234
    assert dpn0.num_images == 6 and dpn0.model == "UNet"
    assert [row["image"] for row in dpn0.per_image] == IMAGES
    assert [row["f1@opt"] for row in dpn0.per_image] == DPN_F1[0]
    assert math.isnan(dpn0.per_image[0]["precision@0.5"])  # empty CSV cell
    assert dpn0.second_observer["f1"] == 0.7891
    # an experiment folder or a run folder as the root gives the same experiment name
    assert {r.experiment for r in collect_runs([runs_dir / "drive" / "dpn"])} == {"drive/dpn"}


def test_latest_evaluation_of_a_run_wins(runs_dir: Path):
    run = next((runs_dir / "drive" / "unet").iterdir())
    again = write_run(runs_dir, "drive/unet", run.name + "x", 0, 0.5, 0.5, UNET_F1[0])
    (again / "test").rename(run / "test-2")
    runs = [r for r in collect_runs([run]) if r.method == "unet"]
    assert len(runs) == 1 and runs[0].metrics["auroc"] == 0.5
    assert len(collect_runs([run], latest_only=False)) == 2


def test_mean_and_std_over_seeds(runs_dir: Path):
    table = leaderboard_table(collect_runs([runs_dir]), ["auroc", "f1@opt"], include_reported=False)
    rows = {r.method: r for r in table.rows}
    assert rows["dpn"].n == 3 and rows["unet"].n == 2
    mean, std = rows["dpn"].values["auroc"]
    assert mean == pytest.approx(statistics.mean(DPN_AUROC), abs=1e-12)
    assert std == pytest.approx(statistics.stdev(DPN_AUROC), abs=1e-12)  # sample std, n - 1
    mean, std = rows["dpn"].values["f1@opt"]
    assert mean == pytest.approx(statistics.mean([0.82, 0.83, 0.84]), abs=1e-12)
    assert std == pytest.approx(0.01, abs=1e-12)
    assert rows["unet"].values["auroc"][1] == pytest.approx(statistics.stdev(UNET_AUROC))
    assert rows["dpn"].num_parameters == 1234 and rows["dpn"].source == "seeds 0,1,2"


def test_reported_and_observer_rows_and_sorting(runs_dir: Path):
    table = leaderboard_table(collect_runs([runs_dir]), ["auroc", "f1@opt"], sort_by="auroc")
    kinds = [r.kind for r in table.rows]
    assert kinds.count("ours") == 2
    reported_rows = [r for r in table.rows if r.kind == "reported"]
    assert {r.dataset for r in reported_rows} == {"drive"}
    dpn_paper = next(r for r in reported_rows if r.method == "DPN")
    assert dpn_paper.value("auroc") == 0.9815 and dpn_paper.value("f1@opt") == 0.8293
    assert "002, Table 1" in dpn_paper.source and "threshold opt" in dpn_paper.source
    # the second observer: from the runs' test images, and from the reference data
    observers = [r for r in table.rows if r.kind == "observer"]
    assert len(observers) == 2
    assert all(r.value("f1@opt") == 0.7891 and math.isnan(r.value("auroc")) for r in observers)
    # sorted by AUROC, descending; rows without AUROC (observers) last
    values = [r.value("auroc") for r in table.rows]
    finite = [v for v in values if math.isfinite(v)]
    assert finite == sorted(finite, reverse=True)
    assert all(not math.isfinite(v) for v in values[len(finite) :])
    assert table.rows[0].method.startswith("patch2image Dense") and values[0] == 0.9870
    # ours sit among the papers' rows by value
    methods = [r.method for r in table.rows]
    assert methods.index("dpn") < methods.index("DUNet (reported)") < methods.index("unet")
    # another sort key
    by_f1 = leaderboard_table(collect_runs([runs_dir]), ["auroc", "f1@opt"], sort_by="f1@opt")
    assert [r.method for r in by_f1.rows[:2]] == ["dpn", "DPN"]  # 0.83 (ours), 0.8293


def test_dataset_filter_drops_other_datasets(runs_dir: Path):
    write_run(runs_dir, "stare/dpn", "20260101-000000", 0, 0.95, 0.8, DPN_F1[0], dataset="STARE")
    runs = collect_runs([runs_dir])
    table = leaderboard_table(runs, ["auroc"], dataset="STARE")
    assert {r.dataset for r in table.rows} == {"stare"}
    assert [r.method for r in table.rows if r.kind == "ours"] == ["dpn"]
    assert {r.protocol for r in table.rows if r.kind == "reported"} >= {"first10-10", "loo"}
    assert len(leaderboard_table(runs, ["auroc"]).rows) > len(table.rows)


def test_markdown_and_csv(runs_dir: Path):
    table = leaderboard_table(
        collect_runs([runs_dir]), ["auroc", "f1@opt"], sort_by="auroc", include_reported=True
    )
    md = table.to_markdown().splitlines()
    assert md[0] == (
        "| method | kind | dataset | protocol | n | params | auroc | f1@opt | images/s | source |"
    )
    dpn = next(line for line in md if line.startswith("| dpn |"))
    assert "| 0.9800 ± 0.0100 |" in dpn and "| 3 |" in dpn and "| 1,234 |" in dpn
    assert "| 0.9815 |" in next(line for line in md if line.startswith("| DPN |"))
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert len(rows) == len(table.rows)
    dpn_row = next(r for r in rows if r["method"] == "dpn")
    assert float(dpn_row["auroc_mean"]) == pytest.approx(0.98, abs=1e-12)
    assert float(dpn_row["auroc_std"]) == pytest.approx(0.01, abs=1e-12)
    assert dpn_row["n"] == "3" and dpn_row["kind"] == "ours"
    paper = next(r for r in rows if r["method"] == "DPN")
    assert paper["auroc_mean"] == "0.9815" and paper["auroc_std"] == ""


def test_paired_comparison_matches_scipy():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.7, 0.9, size=15)
    b = a - 0.01 + rng.normal(0, 0.01, size=15)
    rows_a = [{"image": f"im{i}", "f1@opt": v} for i, v in enumerate(a)]
    rows_b = [{"image": f"im{i}", "f1@opt": v} for i, v in enumerate(b)]
    res = paired_comparison(rows_a, rows_b, "f1@opt", names=("dpn", "unet"))
    assert res.n == 15
    assert res.mean_diff == pytest.approx(float(np.mean(a - b)), abs=1e-15)
    assert res.p_value == pytest.approx(wilcoxon(a - b).pvalue, rel=1e-12)
    assert res.ci_low < res.mean_diff < res.ci_high
    # pairing is by image name, not by order; NaNs and unmatched images are left out
    shuffled = [rows_b[i] for i in rng.permutation(15)] + [{"image": "extra", "f1@opt": 0.1}]
    rows_a2 = rows_a + [{"image": "nan", "f1@opt": math.nan}]
    shuffled.append({"image": "nan", "f1@opt": 0.5})
    again = paired_comparison(rows_a2, shuffled, "per_image/f1@opt", names=("dpn", "unet"))
    assert (again.n, again.mean_diff, again.p_value) == (res.n, res.mean_diff, res.p_value)
    assert (again.ci_low, again.ci_high) == (res.ci_low, res.ci_high)  # seeded bootstrap
    text = str(res)
    assert re.fullmatch(
        r"dpn - unet, f1@opt over 15 paired images: difference -?\d\.\d{4} "
        r"\[95% CI -?\d\.\d{4}, -?\d\.\d{4}\], p = \S+: (not )?significant \(alpha 0.05\)",
        text,
    ), text


def test_identical_methods_are_not_significant():
    rows = [{"image": f"im{i}", "auroc": 0.9 + i / 100} for i in range(5)]
    res = paired_comparison(rows, rows, "auroc")
    assert (res.mean_diff, res.ci_low, res.ci_high, res.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert str(res).endswith("p = 1: not significant (alpha 0.05)")


def test_paired_comparison_errors_are_readable():
    rows = [{"image": "a", "auroc": 0.9}, {"image": "b", "auroc": 0.8}]
    with pytest.raises(LeaderboardError, match="0 image\\(s\\) in common"):
        paired_comparison(rows, [{"image": "c", "auroc": 0.9}], "auroc")
    with pytest.raises(LeaderboardError, match="no 'f1@opt' column"):
        paired_comparison(rows, rows, "f1@opt")


def test_bootstrap_ci_covers_the_true_difference():
    """Coverage of the 95 % percentile-bootstrap interval over simulated test sets of 30
    images with a true mean difference of 0.01: about 95 % of the intervals contain it."""
    rng = np.random.default_rng(0)
    true_diff, trials, hits = 0.01, 200, 0
    for t in range(trials):
        a = rng.uniform(0.75, 0.85, size=30)
        b = a - true_diff + rng.normal(0, 0.01, size=30)
        rows_a = [{"image": str(i), "f1": v} for i, v in enumerate(a)]
        rows_b = [{"image": str(i), "f1": v} for i, v in enumerate(b)]
        res = paired_comparison(rows_a, rows_b, "f1", n_boot=2000, seed=t)
        hits += res.ci_low <= true_diff <= res.ci_high
    assert 0.88 <= hits / trials <= 0.99
    # a large effect is significant, and its interval excludes zero
    assert res.significant and res.ci_low > 0


def test_leaderboard_command(runs_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "board.csv"
    code = leaderboard_main(
        [
            str(runs_dir),
            "--metric",
            "auroc,f1@opt",
            "--sort",
            "auroc",
            "--format",
            "csv",
            "--output",
            str(out),
            "--dataset",
            "drive",
            "--compare",
            "dpn",
            "unet",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["method"] for r in rows if r["kind"] == "ours"] == ["dpn", "unet"]
    printed = capsys.readouterr().out
    # dpn's per-image AUROC equals unet's (0.5 everywhere): no difference
    assert "dpn - unet, auroc over 6 paired images: difference 0.0000" in printed
    code = leaderboard_main(
        [
            str(runs_dir),
            "--metric",
            "f1@opt",
            "--compare",
            "dpn",
            "unet",
            "--boxplot",
            str(tmp_path / "box.png"),
            "--no-reported",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and (tmp_path / "box.png").stat().st_size > 1000
    assert "| dpn | ours |" in printed and "reported" not in printed
    # per image, dpn's F1 averaged over its 3 seeds minus unet's averaged over its 2
    runs = collect_runs([runs_dir])
    res = paired_comparison(per_image_rows(runs, "dpn"), per_image_rows(runs, "unet"), "f1@opt")
    dpn = np.mean([DPN_F1[0], DPN_F1[1], DPN_F1[0]], axis=0)
    assert res.mean_diff == pytest.approx(float(np.mean(dpn - np.mean(UNET_F1, axis=0))))
    assert f"difference {res.mean_diff:.4f}" in printed
    assert leaderboard_main([str(tmp_path / "empty")]) == 2
    (tmp_path / "empty").mkdir()
    assert leaderboard_main([str(tmp_path / "empty")]) == 1
    assert "retina test" in capsys.readouterr().err


def test_wandb_api_is_not_touched_offline(runs_dir: Path, monkeypatch):
    import wandb

    def no_network(*args, **kwargs):
        raise AssertionError("the W&B API was called while offline")

    monkeypatch.setattr(wandb, "Api", no_network)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.warns(UserWarning, match="W&B is offline"):
        runs = collect_runs([runs_dir], wandb_project="me/retina-lightning")
    assert len(runs) == 5


def _wandb_offline_folder(run: Path) -> Path:
    """What RetinaWandbLogger leaves in a run folder offline: ``wandb/run_id`` and a
    ``wandb/offline-run-<stamp>-<id>`` folder, here with a summary and a config that disagree
    with the run's own files, so that a result read from them would show."""
    folder = run / "wandb" / "offline-run-20260101_000000-abcd1234"
    (folder / "files").mkdir(parents=True)
    (run / "wandb" / "run_id").write_text("abcd1234\n")
    summary = {"test/auroc": 0.5, "test/f1@opt": 0.5}
    (folder / "files" / "wandb-summary.json").write_text(json.dumps(summary))
    retina = {"method": "from-wandb", "dataset": "stare", "protocol": "loo", "seed": 99}
    config = {"retina": {"value": {**retina, "run_dir": str(run)}}}
    (folder / "files" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "run-abcd1234.wandb").write_bytes(b":W&B\xe1\xbe\x00")  # private format
    return folder


def test_a_run_with_a_wandb_folder_is_read_once_from_metrics_json(runs_dir: Path, recwarn):
    dpn1 = runs_dir / "drive" / "dpn" / "20260101-000000"
    _wandb_offline_folder(dpn1)
    kfold = {"class_path": "x.KFoldSplit", "init_args": {"num_folds": 4, "fold": 2}}
    chase = write_run(runs_dir, "chase_db1/unet_4fold", "20260101-000000", 5, 0.97, 0.8, UNET_F1[0])
    (chase / "config.yaml").write_text(yaml.safe_dump(_config(5, "CHASEDB1", kfold)))
    _wandb_offline_folder(chase)
    runs = collect_runs([runs_dir])
    assert len(runs) == 6 and {r.origin for r in runs} == {"results"}
    got = {(r.method, r.dataset, r.protocol, r.seed, r.fold): r for r in runs}
    r = got["dpn", "drive", "official", 1, None]
    assert r.metrics["auroc"] == DPN_AUROC[1] and r.metrics["f1@opt"] == pytest.approx(0.83)
    assert r.source == str(dpn1 / "test" / "metrics.json") and len(r.per_image) == 6
    assert got["unet", "chase_db1", "4fold", 5, 2].metrics["auroc"] == 0.97
    assert not [w for w in recwarn if "W&B" in str(w.message)]


def test_a_wandb_folder_without_test_results_says_how_to_get_them(tmp_path: Path, capsys):
    run = tmp_path / "runs" / "drive" / "dpn" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(_config(0)))
    folder = _wandb_offline_folder(run)
    for path in (folder, run / "wandb"):
        with pytest.warns(UserWarning, match=r"run `retina test .*`wandb sync") as caught:
            assert collect_runs([path]) == []
        assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert collect_runs([tmp_path / "runs"]) == []  # a fit-only run among others: silent
    with pytest.warns(UserWarning, match="retina test"):
        assert leaderboard_main([str(folder)]) == 1
    assert "retina test" in capsys.readouterr().err
    # the W&B folder of an evaluated run: its results are in the run folder
    write_run(tmp_path / "runs", "drive/unet", "20260101-000000", 0, 0.97, 0.8, UNET_F1[0])
    tested = _wandb_offline_folder(tmp_path / "runs" / "drive" / "unet" / "20260101-000000")
    with pytest.warns(UserWarning, match="pass the run folder"):
        assert collect_runs([tested]) == []


class _ApiRun:
    def __init__(self, name: str, auroc: float, run_dir: str) -> None:
        retina = {"method": name, "dataset": "drive", "protocol": "official", "seed": 4}
        self.name, self.group, self.id = name, "drive/official", f"id-{name}"
        self.url = f"https://wandb.ai/me/retina-lightning/runs/{self.id}"
        self.config = {"retina": {**retina, "run_dir": run_dir}}
        self.summary = type("Summary", (), {"_json_dict": {"test/auroc": auroc}})()


def test_wandb_project_runs_through_the_public_api(runs_dir: Path, monkeypatch):
    local = next((runs_dir / "drive" / "dpn").iterdir())
    api_runs = [_ApiRun("dpn", 0.5, str(local)), _ApiRun("iternet", 0.98, "/cluster/runs/x")]
    api = type("Api", (), {"runs": lambda self, project: api_runs})
    import wandb

    monkeypatch.setattr(wandb, "Api", api)
    monkeypatch.setenv("WANDB_MODE", "online")
    runs = collect_runs([runs_dir], wandb_project="me/retina-lightning")
    assert len(runs) == 6  # the synced copy of a local run is not counted twice
    (online,) = [r for r in runs if r.origin == "wandb-api"]
    assert (online.method, online.dataset, online.protocol, online.seed) == (
        "iternet",
        "drive",
        "official",
        4,
    )
    assert online.metrics == {"auroc": 0.98} and online.source == api_runs[1].url


def test_reference_rows_cite_their_papers():
    for rec in REPORTED:
        assert rec.source in PAPERS or rec.source == "data", rec
        assert rec.where and set(rec.metrics) <= {
            "se",
            "sp",
            "acc",
            "auroc",
            "auprc",
            "f1",
            "jaccard",
            "connectivity",
        }
        assert all(0.0 < v < 1.0 for v in rec.metrics.values()), rec
    drive = {r.method for r in reported("DRIVE")}
    assert drive >= {
        "second_observer",
        "unet",
        "r2unet",
        "dunet",
        "iternet",
        "iternet_patched",
        "dpn",
        "patch2image_light",
        "patch2image_miniunet",
        "patch2image_dense",
    }
    assert {r.protocol for r in reported("chase")} == {"first20-8", "first14-14", "4fold"}
    cross = reported("stare", cross_dataset=True)
    assert [r.metrics["auroc"] for r in cross] == [0.9559, 0.9689]
    assert all(r.train_dataset == "drive" for r in cross)


def _synthetic_config(path: Path, seed: int, **style: float) -> Path:
    """A tiny experiment config: the quickstart U-Net on a SyntheticFundus setting."""
    config = yaml.safe_load((REPO / "configs" / "synthetic" / "unet.yaml").read_text())
    config["trainer"].update(max_epochs=1, enable_progress_bar=False, enable_model_summary=False)
    model = config["model"]["init_args"]
    model["model"]["init_args"].update(base_channels=4, depth=2)
    model.update(connectivity=False, figures=False)
    data = config["data"]["init_args"]
    data["dataset"]["init_args"].update(
        num_train=3, num_test=2, height=64, width=64, seed=seed, **style
    )
    data.update(patch_size=32, batch_size=2, steps_per_epoch=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_cross_dataset_matrix(tmp_path: Path, monkeypatch, capsys):
    from retina_lightning.cli import main

    monkeypatch.chdir(tmp_path)
    cfg_a = _synthetic_config(tmp_path / "configs" / "synth_a.yaml", seed=0)
    # another "device": fainter vessels, more noise and blur
    cfg_b = _synthetic_config(
        tmp_path / "configs" / "synth_b.yaml",
        seed=5,
        vessel_contrast=0.5,
        noise_std=0.08,
        blur_sigma=1.5,
    )
    main(["fit", "--config", str(cfg_a)])
    main(["fit", "--config", str(cfg_b)])
    ckpt_a = next((tmp_path / "runs" / "synth_a").glob("*/checkpoints/last.ckpt"))
    ckpt_b = next((tmp_path / "runs" / "synth_b").glob("*/checkpoints/last.ckpt"))
    out = tmp_path / "cross.csv"
    args = ["cross", "--checkpoints", str(ckpt_a), str(ckpt_b), "--configs", str(cfg_a)]
    assert leaderboard_main([*args, str(cfg_b), "--format", "csv", "--output", str(out)]) == 0
    cells = {(r["train"], r["test"]): r for r in csv.DictReader(out.open())}
    assert sorted(cells) == [(a, b) for a in ("synth_a", "synth_b") for b in ("synth_a", "synth_b")]
    assert {k for k, r in cells.items() if r["in_domain"] == "True"} == {
        ("synth_a", "synth_a"),
        ("synth_b", "synth_b"),
    }
    # an off-diagonal cell is `retina test` of that checkpoint on the other data
    main(["test", "--config", str(cfg_b), "--ckpt_path", str(ckpt_a)])
    report = json.loads((ckpt_a.parent.parent / "test" / "metrics.json").read_text())
    assert float(cells[("synth_a", "synth_b")]["auroc"]) == pytest.approx(
        report["pooled"]["auroc"], abs=1e-7
    )
    assert float(cells[("synth_a", "synth_b")]["f1@opt"]) == pytest.approx(
        report["pooled"]["f1@opt"], abs=1e-7
    )
    assert cells[("synth_a", "synth_a")]["auroc"] != cells[("synth_a", "synth_b")]["auroc"]

    # a config whose dataset root is missing (issue 15, item 8): its cells are reported missing
    # with the reason, the others still tested, the matrix still printed, and the exit code 1
    gone = yaml.safe_load((REPO / "configs" / "drive" / "unet.yaml").read_text())
    gone["data"]["init_args"]["dataset"]["init_args"]["root"] = str(tmp_path / "no_DRIVE")
    cfg_gone = tmp_path / "configs" / "drive_gone.yaml"
    cfg_gone.write_text(yaml.safe_dump(gone))
    capsys.readouterr()
    code = leaderboard_main(
        ["cross", "--checkpoints", str(ckpt_a), "--configs", str(cfg_gone), str(cfg_a)]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert "| synth_a | missing | " + f"{float(cells[('synth_a', 'synth_a')]['auroc']):.4f}*" in out
    assert "Missing cells:" in out and "Traceback" not in out + err
    (line,) = [x for x in err.splitlines() if "missing" in x]
    assert "synth_a x drive_gone" in line and "drive_gone.yaml" in line
    assert str(tmp_path / "no_DRIVE") in line and "does not exist" in line


def test_cross_dataset_markdown():
    matrix = CrossDatasetMatrix(
        ["drive", "stare"],
        ["drive", "stare"],
        np.array([[0.98, 0.95], [0.96, 0.99]]),
        np.array([[0.82, 0.70], [0.75, 0.84]]),
        np.eye(2, dtype=bool),
    )
    lines = matrix.to_markdown().splitlines()
    assert lines[2] == "| train \\ test | drive | stare |"
    assert lines[4] == "| drive | 0.9800* | 0.9500 |"
    assert lines[5] == "| stare | 0.9600 | 0.9900* |"
    assert "| stare | 0.7500 | 0.8400* |" in lines
    rows = list(csv.DictReader(io.StringIO(matrix.to_csv())))
    assert [(r["train"], r["test"], r["in_domain"]) for r in rows][:2] == [
        ("drive", "drive", "True"),
        ("drive", "stare", "False"),
    ]
