"""Trained models shipped inside the package (issue 22): ``retina models``.

Each model is a folder of package data, read at run time and never downloaded:

* ``model.ckpt``: a ``retina fit`` checkpoint trimmed to what inference needs (weights, the
  model and datamodule configuration, the datamodule state with the training images' FOV
  diameter, the ``threshold`` buffer); no optimiser state, no pickled code (it loads with
  ``torch.load(..., weights_only=True)``);
* ``config.yaml``: the resolved training config of the run (data roots reset to the config
  defaults), which ``retina test --model NAME`` tests with;
* ``card.yaml``: the model card, ``retina models NAME``: training data and its terms of use,
  the exact command and seed, the numbers, its FOV diameter and threshold.

``scripts/ship_model.py`` writes a folder from a run; the models themselves are trained by the
suite's own commands (``configs/models/``). Peers publish trained models the same way
(bob.ip.binseg / deepdraw, mmsegmentation); this keeps them inside the wheel (a few MB).

Module-level imports are the standard library and PyYAML only, so ``retina models`` is fast.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

#: where the shipped models' folders are (package data)
ZOO_DIR = Path(__file__).resolve().parent
CARD = "card.yaml"
CHECKPOINT = "model.ckpt"
CONFIG = "config.yaml"


class ZooError(ValueError):
    """An unknown model name or a damaged model folder (printed in one line)."""


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: its folder and what is in it."""

    name: str
    folder: Path

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT

    @property
    def config(self) -> Path:
        return self.folder / CONFIG

    @cached_property
    def card(self) -> dict[str, Any]:
        return read_card(self.folder / CARD)


def read_card(path: Path) -> dict[str, Any]:
    try:
        card = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ZooError(f"{path}: unreadable model card ({e})") from e
    if not isinstance(card, dict) or not isinstance(card.get("name"), str):
        raise ZooError(f"{path}: a model card needs a `name:`")
    return card


def available(root: Path = ZOO_DIR) -> dict[str, ShippedModel]:
    """``{name: model}`` of every folder under ``root`` that holds a card, in name order."""
    models = {}
    for card in sorted(root.glob(f"*/{CARD}")):
        name = read_card(card)["name"]
        models[name] = ShippedModel(name, card.parent)
    return models


def get(name: str, root: Path = ZOO_DIR) -> ShippedModel:
    """The shipped model called ``name``, or a :class:`ZooError` listing the names."""
    models = available(root)
    if name in models:
        model = models[name]
        missing = [p.name for p in (model.checkpoint, model.config) if not p.is_file()]
        if missing:
            raise ZooError(f"shipped model {name!r} ({model.folder}) lacks {', '.join(missing)}")
        return model
    close = difflib.get_close_matches(name, list(models), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ZooError(
        f"no shipped model {name!r}{hint}; the package holds {', '.join(models) or 'none'} "
        "(`retina models` lists them)"
    )


def shipped_model_of(path: str | Path, root: Path = ZOO_DIR) -> ShippedModel | None:
    """The shipped model whose checkpoint ``path`` is, else ``None``."""
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    for model in available(root).values():
        if model.checkpoint.resolve() == resolved:
            return model
    return None


def expand_model_option(argv: list[str], root: Path = ZOO_DIR) -> list[str]:
    """``retina test|validate --model NAME ...`` -> ``--config <its config.yaml> --ckpt_path
    <its model.ckpt> --experiment models/NAME ...``; any other argv unchanged. The model's
    config comes first, so later ``--config`` files (a data fragment: another test set) and
    options still override it. ``--model`` with a class path (LightningCLI's own use) stays."""
    if not argv or argv[0] not in ("test", "validate"):
        return argv
    out, name, i = [argv[0]], None, 1
    while i < len(argv):
        arg = argv[i]
        value = None
        if arg == "--model" and i + 1 < len(argv):
            value, step = argv[i + 1], 2
        elif arg.startswith("--model="):
            value, step = arg.split("=", 1)[1], 1
        if value is not None and "." not in value and not value.startswith(("{", "[")):
            name = value
            i += step
            continue
        out.append(arg)
        i += 1
    if name is None:
        return argv
    model = get(name, root)
    given = {a.split("=", 1)[0] for a in out}
    if "--ckpt_path" in given:
        raise ZooError("--model NAME brings its own checkpoint: drop --ckpt_path")
    extra = ["--config", str(model.config)]
    rest = out[1:]
    tail = ["--ckpt_path", str(model.checkpoint)]
    if "--experiment" not in given:
        tail += ["--experiment", f"models/{model.name}"]
    return [out[0], *extra, *rest, *tail]


def format_card(model: ShippedModel) -> str:
    """``retina models NAME``: the card as readable text (YAML, in the card's order)."""
    header = f"# {model.name}: {model.card.get('summary', '')}".rstrip(": ")
    body = yaml.safe_dump(model.card, sort_keys=False, width=96, allow_unicode=True)
    files = (
        f"# files: {model.checkpoint} ({model.checkpoint.stat().st_size / 1e6:.2f} MB), "
        f"{model.config}"
        if model.checkpoint.is_file()
        else f"# files: {model.folder}"
    )
    return "\n".join([header, files, body.rstrip()])


def format_list(models: dict[str, ShippedModel]) -> str:
    """``retina models``: one line per model."""
    if not models:
        return "no shipped models in this installation"
    width = max(map(len, models))
    lines = ["shipped models (retina models NAME for the card):"]
    for name, m in models.items():
        card = m.card
        fov, thr = card.get("fov_diameter"), card.get("threshold")
        extra = f"FOV {fov} px, threshold {thr:.3f}" if fov and thr is not None else ""
        lines.append(f"  {name:{width}s}  {card.get('summary', '')}  [{extra}]")
    lines += [
        "",
        "  retina predict --model NAME --input DIR --output DIR",
        "  retina test --model NAME [--config <data fragment>] "
        "--data.init_args.dataset.init_args.root=DIR",
    ]
    return "\n".join(lines)


def models_main(argv: list[str]) -> int:
    """``retina models [NAME]``: list the shipped models, or print one model card."""
    if argv and argv[0] in ("-h", "--help"):
        print(
            "usage: retina models [NAME]\n\nList the trained models shipped inside the package, "
            "or print the model card of NAME\n(training data and its terms of use, command, "
            "seed, numbers, FOV diameter, threshold)."
        )
        return 0
    if len(argv) > 1:
        print("retina models: error: expected at most one model name", file=sys.stderr)
        return 2
    try:
        if not argv:
            print(format_list(available()))
            return 0
        print(format_card(get(argv[0])))
    except ZooError as e:
        print(f"retina models: error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "ZOO_DIR",
    "ShippedModel",
    "ZooError",
    "available",
    "expand_model_option",
    "format_card",
    "get",
    "models_main",
    "shipped_model_of",
]
