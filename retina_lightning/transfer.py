"""Transfer learning: load weights from another run, replace the head, freeze, per-group rates.

Two papers of the suite build on a trained network instead of a random one:

* SegRAVIR (000, section IV-D): the RAVIR-pretrained network becomes a colour-fundus teacher
  by keeping the encoder and segmentation decoder and replacing "the last layer ... with a
  1x1 convolutional layer whose weights are randomly initialized", then fine-tuning.
* patch2image (004, section 5.2, phase 3): "the transfer consists in copying all the weights
  of f_P into f_I", the patch network's weights into the same network run on whole images,
  then fine-tuning them there (phase 4); 004 section 4 names the two options after the copy,
  "keep the transferred weights frozen or fine-tune them".

The pieces:

* :func:`load_weights` copies every tensor whose name and shape match from a checkpoint
  (Lightning ``.ckpt`` or a plain state dict) and returns a :class:`LoadReport` that says
  what was loaded, what stays freshly initialised, what was skipped for a shape mismatch
  (a 3-class head into a 1-class model) and what the checkpoint has that the model lacks
  (SegRAVIR's reconstruction stream into a main-stream-only network).
* :func:`freeze` turns off gradients of parameters selected by name patterns.
* :func:`param_groups` builds optimizer groups with separate head / backbone learning rates.
* :class:`TransferLearning` is the config-level interface: a Lightning callback that does
  all of this at the start of ``fit`` for any task (``trainer.callbacks`` in a config).

Name patterns are shell globs matched against the whole parameter name (``"head.*"``,
``"enc_res.*"``), or regular expressions searched in it when prefixed ``re:``
(``"re:^(stem|enc_res)\\."``).
"""

from __future__ import annotations

import fnmatch
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

__all__ = [
    "LoadReport",
    "TransferError",
    "TransferLearning",
    "apply_transfer",
    "freeze",
    "load_weights",
    "match_names",
    "param_groups",
    "read_state_dict",
    "resolve_checkpoint_ref",
    "split_head_group",
]


class TransferError(ValueError):
    """A checkpoint does not fit the model the way the configuration asked for."""


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


def resolve_checkpoint_ref(ref: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A checkpoint file, or ``"<experiment>@best"`` / ``"<experiment>@last"``: the best / last
    checkpoint of the latest run of that experiment under ``runs_dir`` (as ``retina test
    --ckpt_path best`` finds it), so a config can name the run it builds on before it exists,
    e.g. ``distill/segravir_teacher_drive@best``."""
    text = str(ref)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    experiment, sep, which = text.rpartition("@")
    if sep and which in ("best", "last") and experiment:
        from retina_lightning.runs import resolve_checkpoint

        return resolve_checkpoint(which, Path(runs_dir), experiment)
    raise FileNotFoundError(
        f"checkpoint {text!r}: no such file; give a checkpoint path, or "
        f"'<experiment>@best' / '<experiment>@last' to use a run under {str(runs_dir)!r} "
        "(e.g. 'distill/segravir_pretrain_av@best')"
    )


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Lightning checkpoints written by the CLI carry the parsed config (jsonargparse
        # objects) in their hyper-parameters; a checkpoint the user names is trusted like
        # Lightning's own load_from_checkpoint trusts it.
        return torch.load(path, map_location="cpu", weights_only=False)


def read_state_dict(
    checkpoint: str | Path | Mapping[str, Any], prefix: str | None = "model."
) -> tuple[dict[str, Tensor], str]:
    """The network's tensors in a checkpoint, keyed as in ``network.state_dict()``.

    Args:
        checkpoint: a Lightning checkpoint (``.ckpt``: tensors under ``"state_dict"``, named
            ``<prefix><name>`` by the task, e.g. ``model.head.weight``), a plain state dict
            file (``torch.save(net.state_dict())``), or an already loaded mapping.
        prefix: the task attribute that holds the network (``"model."`` for every task of the
            suite). In a Lightning checkpoint only keys under it are kept (task-level buffers
            such as the threshold are not network weights); in a plain state dict it is
            stripped where present. ``None`` or ``""``: keys are taken as they are.

    Returns:
        ``(state_dict, description)`` where ``description`` names the source for reports.
    """
    if isinstance(checkpoint, Mapping):
        raw, source = checkpoint, "<state dict>"
    else:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r}: no such file")
        raw, source = _torch_load(path), str(path)
    lightning = isinstance(raw.get("state_dict"), Mapping)
    tensors = raw["state_dict"] if lightning else raw
    tensors = {k: v for k, v in tensors.items() if isinstance(v, Tensor)}
    if not tensors:
        raise TransferError(
            f"{source}: holds no tensors; expected a Lightning checkpoint (with 'state_dict') "
            "or a state dict saved with torch.save(model.state_dict(), path)"
        )
    if not prefix:
        return dict(tensors), source
    under = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if lightning and not under:
        sample = ", ".join(sorted(tensors)[:5])
        raise TransferError(
            f"{source}: no tensor is named '{prefix}...' (keys look like: {sample}); set the "
            "prefix to the task attribute that holds the network, or '' for none"
        )
    if lightning:
        return under, source
    return {**{k: v for k, v in tensors.items() if not k.startswith(prefix)}, **under}, source


# --------------------------------------------------------------------------------------------
# name patterns
# --------------------------------------------------------------------------------------------


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def match_names(names: Iterable[str], patterns: Sequence[str], what: str = "parameter") -> set[str]:
    """The ``names`` that match any of ``patterns``: shell globs matched against the whole name
    (``"head.*"``), or regular expressions searched in it when prefixed ``re:``
    (``"re:^enc_res\\.[01]\\."``). A pattern that matches nothing is an error, since it is
    almost always a typo that would silently train (or freeze) the wrong layers."""
    names = list(names)
    selected: set[str] = set()
    for pattern in patterns:
        hits = {n for n in names if _matches(pattern, n)}
        if not hits:
            sample = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            raise TransferError(
                f"pattern {pattern!r} matches no {what} name; names look like: {sample} "
                "(globs match the whole name, e.g. 'head.*'; prefix 're:' for a regex)"
            )
        selected |= hits
    return selected


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


@dataclass
class LoadReport:
    """What :func:`load_weights` did, tensor by tensor (parameters and buffers).

    Attributes:
        source: the checkpoint it read.
        loaded: names copied from the checkpoint (name and shape matched).
        new: names of the model absent from the checkpoint: they keep their fresh values.
        skipped_shape: ``(name, checkpoint shape, model shape)`` of names present in both with
            different shapes (a replaced head): the model keeps its fresh values.
        unexpected: names of the checkpoint the model does not have (ignored).
        excluded: names left out on purpose by ``exclude`` patterns (never problems).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    skipped_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per tensor that strict loading refuses."""
        lines = [f"missing in checkpoint: {n}" for n in self.new]
        lines += [
            f"shape mismatch: {n} checkpoint {_fmt_shape(a)} vs model {_fmt_shape(b)}"
            for n, a, b in self.skipped_shape
        ]
        lines += [f"not in model: {n}" for n in self.unexpected]
        return lines

    def summary(self, limit: int = 8) -> str:
        """A printable account: counts, then the names of every category but ``loaded``."""

        def names(items: list[str]) -> str:
            shown = ", ".join(items[:limit])
            return shown + (f", ... (+{len(items) - limit})" if len(items) > limit else "")

        lines = [
            f"weights from {self.source}: {len(self.loaded)} tensors loaded, {len(self.new)} "
            f"new, {len(self.skipped_shape)} skipped (shape), {len(self.unexpected)} "
            f"unexpected, {len(self.excluded)} excluded"
        ]
        if self.new:
            lines.append(f"  new (fresh init): {names(self.new)}")
        for n, a, b in self.skipped_shape[:limit]:
            lines.append(
                f"  skipped (shape): {n} checkpoint {_fmt_shape(a)} -> model {_fmt_shape(b)}"
            )
        if self.unexpected:
            lines.append(f"  unexpected (ignored): {names(self.unexpected)}")
        if self.excluded:
            lines.append(f"  excluded: {names(self.excluded)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def load_weights(
    model: nn.Module,
    checkpoint: str | Path | Mapping[str, Any],
    strict: bool = False,
    prefix: str | None = "model.",
    exclude: Sequence[str] = (),
) -> LoadReport:
    """Copy the tensors of ``checkpoint`` into ``model`` where names and shapes agree.

    Args:
        model: the network (not the Lightning task: pass ``task.model``).
        checkpoint: Lightning checkpoint, plain state dict file, or mapping
            (:func:`read_state_dict`).
        strict: raise :class:`TransferError` listing every missing, mismatched and unexpected
            tensor (outside ``exclude``) instead of loading what fits.
        prefix: task attribute of the network in Lightning checkpoints (``"model."``).
        exclude: name patterns never loaded nor reported as problems, e.g. ``["head.*"]`` for
            a head that is replaced on purpose, or ``["recon_*"]`` for SegRAVIR's
            reconstruction stream when loading into the main stream only.

    Returns:
        the :class:`LoadReport`. Tensors not loaded keep the model's values.
    """
    state, source = read_state_dict(checkpoint, prefix)
    own = model.state_dict()
    excluded = match_names([*own, *state], exclude, "tensor") if exclude else set()
    report = LoadReport(source=source)
    take: dict[str, Tensor] = {}
    for name, tensor in own.items():
        if name in excluded:
            report.excluded.append(name)
        elif name not in state:
            report.new.append(name)
        elif tuple(state[name].shape) != tuple(tensor.shape):
            report.skipped_shape.append((name, tuple(state[name].shape), tuple(tensor.shape)))
        else:
            report.loaded.append(name)
            take[name] = state[name]
    for name in state:
        if name in own:
            continue
        (report.excluded if name in excluded else report.unexpected).append(name)
    if strict and report.problems:
        raise TransferError(
            f"strict loading of {source} into {type(model).__name__} failed:\n  "
            + "\n  ".join(report.problems)
            + "\nload non-strictly (strict: false) to keep fresh values for these, or exclude "
            "the intended ones (exclude: ['head.*'])"
        )
    if not take:
        raise TransferError(
            f"{source}: no tensor matches {type(model).__name__} by name and shape; is it a "
            "checkpoint of the same architecture (and is the prefix right)?\n" + report.summary()
        )
    model.load_state_dict(take, strict=False)
    return report


# --------------------------------------------------------------------------------------------
# freezing and learning rates
# --------------------------------------------------------------------------------------------


def freeze(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Set ``requires_grad = False`` on the parameters whose names match ``patterns``.

    The frozen weights then get no gradient and no optimizer update (004 section 4: "if
    frozen, the weights are not updated"). BatchNorm running statistics are buffers, not
    parameters: they still follow the data in training mode unless the module is put in eval
    mode (:class:`TransferLearning` does that for fully frozen BatchNorm layers).

    Returns:
        the frozen parameter names, in model order.
    """
    names = [n for n, _ in model.named_parameters()]
    chosen = match_names(names, patterns)
    for name, p in model.named_parameters():
        if name in chosen:
            p.requires_grad_(False)
    return [n for n in names if n in chosen]


def param_groups(
    model: nn.Module,
    head_patterns: Sequence[str],
    head_lr: float,
    backbone_lr: float,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the head (names matching ``head_patterns``) at ``head_lr``,
    everything else at ``backbone_lr``. Frozen parameters are left out; empty groups too.

    ``torch.optim.Adam(param_groups(net, ["head.*"], 1e-3, 1e-4))`` fine-tunes a transferred
    backbone ten times slower than its fresh head.
    """
    named = list(model.named_parameters())
    head = match_names([n for n, _ in named], head_patterns)
    backbone_params = [p for n, p in named if n not in head and p.requires_grad]
    head_params = [p for n, p in named if n in head and p.requires_grad]
    groups = [
        {"name": "backbone", "params": backbone_params, "lr": backbone_lr},
        {"name": "head", "params": head_params, "lr": head_lr},
    ]
    return [g for g in groups if g["params"]]


def split_head_group(
    optimizer: torch.optim.Optimizer,
    head_params: Sequence[nn.Parameter],
    lr_factor: float,
    schedulers: Sequence[Any] = (),
) -> None:
    """Move ``head_params`` out of the optimizer's groups into a new group whose learning rate
    is ``lr_factor`` times that of the group they came from (the first one holding any).

    For optimizers built before the task could say which parameters form the head (the
    ``optimizer:`` of a LightningCLI config is built from ``model.parameters()``). The
    schedulers' per-group lists (``base_lrs``, ``_last_lr``, ``max_lrs``) get an entry for the
    new group, so step / cosine / one-cycle / plateau schedules keep driving both groups.
    """
    ids = {id(p) for p in head_params}
    source: dict[str, Any] | None = None
    moved: list[nn.Parameter] = []
    for group in optimizer.param_groups:
        keep = [p for p in group["params"] if id(p) not in ids]
        if len(keep) != len(group["params"]):
            moved += [p for p in group["params"] if id(p) in ids]
            source = source or group
            group["params"] = keep
    if source is None or not moved:
        raise TransferError(
            "none of the head parameters is in the optimizer (are they frozen, or is the "
            "optimizer built for another model?)"
        )
    new = {k: v for k, v in source.items() if k != "params"}
    new["params"] = moved
    for key in ("lr", "initial_lr", "max_lr", "min_lr"):
        if isinstance(new.get(key), (int, float)):
            new[key] = new[key] * lr_factor
    new["name"] = "head"
    index = optimizer.param_groups.index(source)
    optimizer.add_param_group(new)
    for scheduler in schedulers:
        for attr in ("base_lrs", "_last_lr", "max_lrs"):
            values = getattr(scheduler, attr, None)
            if isinstance(values, list) and len(values) == len(optimizer.param_groups) - 1:
                values.append(values[index] * lr_factor)
        min_lrs = getattr(scheduler, "min_lrs", None)
        if isinstance(min_lrs, list) and len(min_lrs) == len(optimizer.param_groups) - 1:
            min_lrs.append(min_lrs[index])


def apply_transfer(
    model: nn.Module,
    init_checkpoint: str | Path | None = None,
    strict: bool = False,
    prefix: str | None = "model.",
    exclude: Sequence[str] = (),
    replace_head: int | None = None,
    freeze_patterns: Sequence[str] = (),
    runs_dir: str | Path = "runs",
) -> LoadReport | None:
    """Load, replace the head, freeze: the three steps of a transfer, in that order.

    Args:
        model: the network.
        init_checkpoint: checkpoint file or ``"<experiment>@best|last"``
            (:func:`resolve_checkpoint_ref`); ``None`` skips loading.
        strict, prefix, exclude: as :func:`load_weights`.
        replace_head: after loading, call ``model.replace_head(replace_head)`` (SegRAVIR,
            000 section IV-D: a fresh 1x1 output convolution for the new task). Building the
            model with the new number of classes and loading non-strictly gives the same
            network: the mismatched head is skipped and keeps its fresh initialisation.
        freeze_patterns: parameter name patterns to freeze (:func:`freeze`).

    Returns:
        the :class:`LoadReport`, or ``None`` when nothing was loaded.
    """
    report = None
    if init_checkpoint is not None:
        path = resolve_checkpoint_ref(init_checkpoint, runs_dir)
        report = load_weights(model, path, strict=strict, prefix=prefix, exclude=exclude)
    if replace_head is not None:
        if not callable(getattr(model, "replace_head", None)):
            raise TransferError(
                f"{type(model).__name__} has no replace_head(num_classes); build it with the "
                "new number of classes instead and load non-strictly (the old head is skipped)"
            )
        model.replace_head(replace_head)
    if freeze_patterns:
        freeze(model, freeze_patterns)
    return report


def _frozen_batchnorm_eval(model: nn.Module) -> int:
    """Put BatchNorm layers whose affine parameters are all frozen in eval mode, so that
    their running statistics stay those of the checkpoint; returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
                count += 1
    return count


# --------------------------------------------------------------------------------------------
# config interface
# --------------------------------------------------------------------------------------------


class TransferLearning(Callback):
    """Initialise, freeze and set per-group learning rates of a task's network at ``fit``.

    A Lightning callback, so any task (``SegmentationTask``, ``DistillationTask``) takes a
    transfer from its config without new task arguments::

        trainer:
          callbacks:
            - class_path: retina_lightning.transfer.TransferLearning
              init_args:
                checkpoint: distill/segravir_pretrain_av@best   # or a .ckpt path
                exclude: ["head.*", "recon_*"]
                freeze: ["stem.*", "enc_res.*"]
                head: ["head.*"]
                head_lr_factor: 10.0

    At ``setup("fit")`` (before the optimizer exists) the weights are loaded
    (:func:`load_weights`) and parameters frozen (:func:`freeze`); the report is printed and
    kept in ``self.report``. When a run is resumed (``fit --ckpt_path``), Lightning restores
    the run's own weights after this and they win. At ``on_fit_start`` the head parameters
    move to their own optimizer group at ``head_lr_factor`` times the learning rate
    (:func:`split_head_group`). At every training epoch start, BatchNorm layers whose
    parameters are all frozen are put in eval mode (``freeze_batchnorm_stats``).

    Args:
        checkpoint: checkpoint file or ``"<experiment>@best|last"``; ``None`` loads nothing
            (freezing / learning rates only).
        strict: refuse a checkpoint that does not cover the network exactly (outside
            ``exclude``).
        prefix: attribute path of the network in the checkpoint's task (``"model."``).
        exclude: tensor name patterns not to load (an intentionally replaced head).
        freeze: parameter name patterns to freeze.
        head: parameter name patterns of the head, for ``head_lr_factor``.
        head_lr_factor: learning rate of the head over that of the rest (1: one group).
        freeze_batchnorm_stats: keep fully frozen BatchNorm layers in eval mode.
        runs_dir: where ``"<experiment>@best"`` references are looked up.
        attribute: the task attribute that holds the network.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        strict: bool = False,
        prefix: str = "model.",
        exclude: list[str] | None = None,
        freeze: list[str] | None = None,
        head: list[str] | None = None,
        head_lr_factor: float = 1.0,
        freeze_batchnorm_stats: bool = True,
        runs_dir: str = "runs",
        attribute: str = "model",
    ) -> None:
        super().__init__()
        if head_lr_factor <= 0:
            raise ValueError(f"head_lr_factor must be > 0, got {head_lr_factor}")
        if head_lr_factor != 1.0 and not head:
            raise ValueError(
                "head_lr_factor needs the head's parameter names: set head: ['head.*'] (globs)"
            )
        self.checkpoint = checkpoint
        self.strict = strict
        self.prefix = prefix
        self.exclude = list(exclude or [])
        self.freeze = list(freeze or [])
        self.head = list(head or [])
        self.head_lr_factor = head_lr_factor
        self.freeze_batchnorm_stats = freeze_batchnorm_stats
        self.runs_dir = runs_dir
        self.attribute = attribute
        self.report: LoadReport | None = None
        self.frozen: list[str] = []

    def _network(self, pl_module: nn.Module) -> nn.Module:
        network = getattr(pl_module, self.attribute, None)
        if not isinstance(network, nn.Module):
            raise TransferError(
                f"TransferLearning: the task {type(pl_module).__name__} has no network "
                f"attribute {self.attribute!r}; set attribute: to the one that holds it"
            )
        return network

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        network = self._network(pl_module)
        if self.checkpoint is not None:
            path = resolve_checkpoint_ref(self.checkpoint, self.runs_dir)
            self.report = load_weights(
                network, path, strict=self.strict, prefix=self.prefix, exclude=self.exclude
            )
            rank_zero_info(f"[transfer] {self.report.summary()}")
        if self.freeze:
            self.frozen = freeze(network, self.freeze)
            total = sum(1 for _ in network.parameters())
            rank_zero_info(f"[transfer] froze {len(self.frozen)} of {total} parameter tensors")

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self.head_lr_factor == 1.0:
            return
        network = self._network(pl_module)
        named = dict(network.named_parameters())
        head = [named[n] for n in sorted(match_names(named, self.head)) if named[n].requires_grad]
        if len(trainer.optimizers) != 1:
            raise TransferError(
                f"head_lr_factor supports one optimizer, the task has {len(trainer.optimizers)}"
            )
        schedulers = [cfg.scheduler for cfg in trainer.lr_scheduler_configs]
        split_head_group(trainer.optimizers[0], head, self.head_lr_factor, schedulers)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.freeze and self.freeze_batchnorm_stats:
            _frozen_batchnorm_eval(self._network(pl_module))
