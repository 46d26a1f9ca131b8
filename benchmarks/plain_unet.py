"""The plain-script baseline of the laptop recipe: what a researcher writes in an afternoon.

A deliberately ordinary PyTorch script, independent of the suite (no ``retina_lightning``
import), that the suite's CPU recipe (``configs/drive/laptop.yaml``) has to beat at the same
wall-clock budget on the same machine (issue 14, part 2). Its recipe is the one the issue
measured:

- input: the green channel of the DRIVE image in [0, 1], CLAHE (scikit-image
  ``equalize_adapthist``, its defaults), computed once before training;
- network: a 3-level U-Net, 16 / 32 / 64 filters, double 3x3 convolution + BatchNorm + ReLU,
  2x2 max pooling, 2x2 transposed convolutions, 1x1 head: 117,073 weights;
- loss: BCE + (1 - soft Dice) over the batch; Adam, lr 2e-3, constant;
- data: all 20 training images, uniform random 64 px patches, random rot90 and flips,
  batch 32, drawn with NumPy on the host; fp32 throughout;
- test: whole images (width padded to a multiple of 4), BatchNorm in eval mode.

The training clock counts the training loop only (the data are read and conditioned before it
starts, as ``retina fit``'s ``max_time`` does). ``--eval-at`` writes the test probabilities at
several points of one run, the clock paused while it does: with a constant learning rate and
a fixed seed a snapshot at 10 min is what a 10-min run ends with. Scoring is left to the
caller (``bench_accuracy.py --plain`` scores the maps with the suite's metrics, so both rows
share one definition)::

    python benchmarks/plain_unet.py --drive /data/DRIVE --eval-at 10 20 --out runs/plain_unet

writes ``<out>/<minutes>min/<image>.npy`` (float32 probabilities, the test image's size) and
``<out>/run.json`` (steps and seconds at each snapshot, the loss curve, the arguments).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.exposure import equalize_adapthist
from torch import nn


def read_green_clahe(path: Path) -> np.ndarray:
    """The green channel in [0, 1] after CLAHE, float32 (H, W)."""
    green = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[..., 1] / 255.0
    return equalize_adapthist(green).astype(np.float32)


def read_binary(path: Path) -> np.ndarray:
    return (np.asarray(Image.open(path).convert("L")) > 127).astype(np.float32)


def read_drive(root: Path, subset: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image, label)`` of every image in ``root/<subset>/images``."""
    items = []
    for image in sorted((root / subset / "images").glob("*.tif")):
        number = image.name.split("_")[0]
        label = root / subset / "1st_manual" / f"{number}_manual1.gif"
        items.append((image.stem, read_green_clahe(image), read_binary(label)))
    if not items:
        raise SystemExit(f"plain_unet.py: no DRIVE images under {root / subset / 'images'}")
    return items


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallUNet(nn.Module):
    """16 / 32 / 64 filters, two poolings: 117,073 weights."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2, self.enc3 = block(1, 16), block(16, 32), block(32, 64)
        self.up2, self.dec2 = nn.ConvTranspose2d(64, 32, 2, stride=2), block(64, 32)
        self.up1, self.dec1 = nn.ConvTranspose2d(32, 16, 2, stride=2), block(32, 16)
        self.head = nn.Conv2d(16, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


def bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    dice = (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + 1 - dice


def sample_batch(
    images: np.ndarray, labels: np.ndarray, size: int, batch: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random ``size`` px patches, each rotated by a random multiple of 90 degrees
    and flipped at random."""
    n, h, w = images.shape
    xs, ys = [], []
    for _ in range(batch):
        i, r, c = rng.integers(n), rng.integers(h - size + 1), rng.integers(w - size + 1)
        x = images[i, r : r + size, c : c + size]
        y = labels[i, r : r + size, c : c + size]
        k = int(rng.integers(4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        xs.append(x.copy())
        ys.append(y.copy())
    return torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys))[:, None]


@torch.no_grad()
def predict(model: nn.Module, image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    x = torch.from_numpy(image)[None, None]
    x = F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="reflect")
    return torch.sigmoid(model(x))[0, 0, :h, :w].numpy().astype(np.float32)


def write_snapshot(model: nn.Module, test, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    for name, image, _ in test:
        np.save(folder / f"{name}.npy", predict(model, image))
    model.train()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plain_unet.py", description=__doc__.split("\n")[0])
    parser.add_argument("--drive", type=Path, required=True, help="DRIVE folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be new)")
    parser.add_argument(
        "--eval-at",
        type=float,
        nargs="+",
        default=[10.0],
        help="training minutes at which to write the test probabilities (default 10)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after these steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"plain_unet.py: {args.out} is not empty; choose a new --out")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train = read_drive(args.drive, "training")
    test = read_drive(args.drive, "test")
    images = np.stack([x for _, x, _ in train])
    labels = np.stack([y for _, _, y in train])
    if min(images.shape[1:]) < args.patch:
        raise SystemExit(f"plain_unet.py: --patch {args.patch} exceeds the images, {images.shape}")
    model = SmallUNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    stops = sorted(m * 60.0 for m in args.eval_at)
    log: dict = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "snapshots": [],
        "loss": [],
    }
    elapsed, step, running = 0.0, 0, []
    start = time.perf_counter()
    while stops:
        x, y = sample_batch(images, labels, args.patch, args.batch, rng)
        loss = bce_dice(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        running.append(loss.item())
        if step % 50 == 0:
            log["loss"].append([step, float(np.mean(running))])
            running = []
        now = elapsed + time.perf_counter() - start
        last = args.max_steps is not None and step >= args.max_steps
        if now >= stops[0] or last:
            minutes = stops.pop(0) / 60.0
            write_snapshot(model, test, args.out / f"{minutes:g}min")
            log["snapshots"].append({"minutes": minutes, "steps": step, "train_s": now})
            print(f"[plain_unet] {minutes:g} min: {step} steps in {now:.0f} s", flush=True)
            elapsed, start = now, time.perf_counter()  # the clock pauses while it predicts
            if last:
                break
    (args.out / "run.json").write_text(json.dumps(log, indent=2))
    return log


if __name__ == "__main__":
    main()
