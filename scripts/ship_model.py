"""Package a trained run as a shipped model (issue 22): ``retina_lightning/zoo/<folder>/``.

    python scripts/ship_model.py drive --run runs/models/drive/<stamp>            # best checkpoint
    python scripts/ship_model.py drive --card_only                               # refresh the card

writes ``model.ckpt`` (the run's best checkpoint trimmed to inference: weights, model and data
configuration, the datamodule state with the training FOV diameter, the threshold buffer; no
optimiser state, loadable with ``weights_only=True``), ``config.yaml`` (the run's resolved
config, data roots reset to the config defaults) and ``card.yaml`` (the model card). The card's
numbers come from ``benchmarks/results/zoo/`` (``python benchmarks/zoo_cross_camera.py``), so
they are measured, never typed in. Who trained the model, with which command, is in
:data:`MODELS`; the command and seed are copied into the card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_model  # noqa: E402
from retina_lightning.precision import default_precision  # noqa: E402
from retina_lightning.runs import best_checkpoint  # noqa: E402
from retina_lightning.zoo import CARD, CHECKPOINT, CONFIG, ZOO_DIR  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "zoo"

DRIVE_TERMS = (
    "DRIVE (Staal et al., IEEE TMI 23(4) 2004; Image Sciences Institute, UMC Utrecht), "
    "distributed for research after registration; cite the paper. The weights inherit the "
    "dataset's terms: check them with the distributor before any use beyond research."
)
CHASE_TERMS = (
    "CHASE_DB1 (Fraz et al., IEEE TBME 59(9) 2012; Child Heart And health Study in England, "
    "Kingston University London), distributed by Kingston University; cite the paper. The "
    "weights inherit the dataset's terms: check them with the distributor before any use "
    "beyond research."
)
RECIPE = (
    "laptop recipe (configs/drive/laptop.yaml): 3-level U-Net, 16/32/64 filters, BatchNorm, "
    "117,073 weights; green channel after CLAHE, normalised inside the FOV; BCE - soft Dice; "
    "Adam 2e-3; 64 px patches, batch 32, flips and rot90; 10,000 steps, the checkpoint of best "
    "validation AUROC"
)
#: what each shipped model is: folder, summary, training data, the command that trained it
MODELS: dict[str, dict[str, Any]] = {
    "drive": {
        "folder": "drive",
        "summary": "DRIVE vessels, laptop-recipe U-Net (117k weights), any camera",
        "training_data": [
            {
                "dataset": "DRIVE",
                "images": "16 of the 20 official training images (21-40) train, 4 validate",
                "terms": DRIVE_TERMS,
            }
        ],
        "command": (
            "retina fit --config configs/drive/laptop.yaml --config configs/data/drive.yaml "
            "--config configs/models/drive.yaml "
            "--data.init_args.dataset.init_args.root=$RETINA_DATA_ROOT/DRIVE "
            "--experiment models/drive"
        ),
        "test_usage": [
            "retina test --model drive --data.init_args.dataset.init_args.root=/data/DRIVE",
            "retina test --model drive --config configs/data/chase_db1_20_8.yaml "
            "--data.init_args.dataset.init_args.root=/data/CHASE_DB1",
        ],
    },
    "chase_db1": {
        "folder": "chase_db1",
        "summary": "CHASE_DB1 vessels, laptop-recipe U-Net at a 540 px FOV, any camera",
        "training_data": [
            {
                "dataset": "CHASE_DB1",
                "images": "Image_01L..Image_10R: 16 train, 4 validate (the last 8 are its test)",
                "terms": CHASE_TERMS,
            }
        ],
        "command": (
            "retina fit --config configs/drive/laptop.yaml "
            "--config configs/data/chase_db1_20_8.yaml --config configs/models/chase_db1.yaml "
            "--data.init_args.dataset.init_args.root=$RETINA_DATA_ROOT/CHASE_DB1 "
            "--experiment models/chase_db1"
        ),
        "test_usage": [
            "retina test --model chase_db1 --data.init_args.dataset.init_args.root=/data/CHASE_DB1",
            "retina test --model chase_db1 --config configs/data/drive.yaml "
            "--data.init_args.dataset.init_args.root=/data/DRIVE",
        ],
    },
    "drive+chase_db1": {
        "folder": "drive_chase_db1",
        "summary": "DRIVE + CHASE_DB1 vessels, laptop-recipe U-Net at a 540 px FOV, any camera",
        "training_data": [
            {
                "dataset": "DRIVE",
                "images": "16 of the 20 official training images train, 4 validate",
                "terms": DRIVE_TERMS,
            },
            {
                "dataset": "CHASE_DB1",
                "images": "Image_01L..Image_10R: 16 train, 4 validate",
                "terms": CHASE_TERMS,
            },
        ],
        "command": (
            "retina fit --config configs/drive/laptop.yaml "
            "--config configs/data/drive_chase_db1.yaml "
            "--config configs/models/drive_chase_db1.yaml --experiment models/drive+chase_db1 "
            "# in a folder whose data/ holds DRIVE/ and CHASE_DB1/ (the fragment's roots)"
        ),
        "test_usage": [
            "retina test --model drive+chase_db1   # both test sets, in a folder whose data/ "
            "holds DRIVE/ and CHASE_DB1/",
            "retina test --model drive+chase_db1 --config configs/data/drive.yaml "
            "--data.init_args.dataset.init_args.root=/data/DRIVE",
        ],
    },
}
#: checkpoint entries a shipped model keeps (Lightning's restore needs the version)
KEEP = (
    "epoch",
    "global_step",
    "pytorch-lightning_version",
    "state_dict",
    "hparams_name",
    "hyper_parameters",
    "datamodule_hparams_name",
    "datamodule_hyper_parameters",
    "RetinaDataModule",
)
DEFAULT_ROOTS = {
    "retina_lightning.data.DRIVE": "data/DRIVE",
    "retina_lightning.data.CHASEDB1": "data/CHASE_DB1",
}


def reset_roots(node: Any) -> Any:
    """Every dataset ``root`` back to the config default (no path of the training machine)."""
    if isinstance(node, dict):
        out = {k: reset_roots(v) for k, v in node.items()}
        cls = out.get("class_path")
        init = out.get("init_args")
        if cls in DEFAULT_ROOTS and isinstance(init, dict) and "root" in init:
            init["root"] = DEFAULT_ROOTS[cls]
        return out
    if isinstance(node, list):
        return [reset_roots(v) for v in node]
    return node


def trim(ckpt: dict[str, Any]) -> dict[str, Any]:
    out = {k: ckpt[k] for k in KEEP if k in ckpt}
    out["datamodule_hyper_parameters"] = reset_roots(out.get("datamodule_hyper_parameters"))
    return out


def results(name: str) -> dict[str, Any]:
    """The model's measured numbers (``benchmarks/zoo_cross_camera.py``), per test set."""
    path = RESULTS / "summary.json"
    if not path.is_file():
        return {}
    table = json.loads(path.read_text())
    return {row["test"]: row["metrics"] for row in table.get("rows", []) if row["model"] == name}


def write_card(name: str, folder: Path, training: dict[str, Any] | None) -> None:
    spec = MODELS[name]
    ckpt = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)
    state = ckpt.get("RetinaDataModule", {})
    hp = ckpt["hyper_parameters"]
    old = {}
    if (folder / CARD).is_file():
        old = yaml.safe_load((folder / CARD).read_text()) or {}
    card: dict[str, Any] = {
        "name": name,
        "summary": spec["summary"],
        "network": RECIPE,
        "training_data": spec["training_data"],
        "command": spec["command"],
        "seed": 0,
        "steps": int(ckpt.get("global_step", 0)),
        "checkpoint": f"best validation AUROC (epoch {int(ckpt.get('epoch', 0))})",
        "trained_on": (training or old.get("trained_on")),
        "fov_diameter": int(state["train_fov_diameter"]),
        "threshold": round(float(ckpt["state_dict"]["threshold"]), 4),
        "threshold_criterion": hp.get("threshold_criterion", "f1")
        + " (F1-maximising threshold on the held-out validation images)",
        "results": results(name) or old.get("results", {}),
        "results_source": (
            "benchmarks/results/zoo_cross_camera.md (python benchmarks/zoo_cross_camera.py)"
        ),
        "usage": [
            f"retina predict --model {name} --input DIR --output DIR",
            *spec["test_usage"],
        ],
    }
    (folder / CARD).write_text(yaml.safe_dump(card, sort_keys=False, width=96))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(MODELS))
    parser.add_argument("--run", type=Path, help="the run folder (runs/models/<name>/<stamp>)")
    parser.add_argument("--ckpt", type=Path, help="a checkpoint file instead of the run's best")
    parser.add_argument("--card_only", action="store_true", help="rewrite card.yaml only")
    args = parser.parse_args(argv)
    folder = ZOO_DIR / MODELS[args.name]["folder"]
    if args.card_only:
        write_card(args.name, folder, None)
        print(f"wrote {folder / CARD}")
        return 0
    if args.run is None:
        parser.error("--run is required (unless --card_only)")
    ckpt_path = args.ckpt or best_checkpoint(sorted((args.run / "checkpoints").glob("best-*.ckpt")))
    raw = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    folder.mkdir(parents=True, exist_ok=True)
    shipped = trim(raw)
    torch.save(shipped, folder / CHECKPOINT)
    torch.load(folder / CHECKPOINT, weights_only=True)  # no pickled code inside
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    config = reset_roots(config)
    config["ckpt_path"] = None
    config["runs_dir"] = "runs"  # the default, not the training machine's folder
    (folder / CONFIG).write_text(
        f"# the resolved training config of shipped model {args.name} (retina test --model "
        f"{args.name}); trained by:\n#   {MODELS[args.name]['command']}\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    training = {
        "checkpoint": str(Path(ckpt_path).name),
        "cpu": cpu_model(),
        # what `retina fit` picked here (the shipped configs set no precision)
        "precision": default_precision("cpu"),
        "torch": str(torch.__version__),
    }
    write_card(args.name, folder, training)
    size = (folder / CHECKPOINT).stat().st_size / 1e6
    print(f"wrote {folder} ({size:.2f} MB model.ckpt from {ckpt_path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
