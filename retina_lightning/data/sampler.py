"""Training patches cut on the device from whole images kept there.

The training images live on the device as one padded uint8 stack; every step draws patch
centres inside the FOV (optionally a share of them on vessel pixels, since vessels cover only
~12 % of a fundus, 002 section IV-A) and gathers the windows with one advanced-indexing op, so
the CPU never touches a patch. Draws use a CPU ``torch.Generator`` seeded from (seed, rank, epoch,
step), the centres then moving to the device: the same seed gives the same patches on the CPU
and on a GPU, different ranks get different patches.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retina_lightning.data.base import require_fraction, require_int


def step_seed(seed: int, rank: int, epoch: int, step: int) -> int:
    """A well-mixed 63-bit seed from the four integers (splitmix64 finaliser)."""
    x = (seed * 0x9E3779B97F4A7C15 + rank * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = (x + epoch * 0x94D049BB133111EB + step * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class PatchSampler:
    """Cuts ``window``-sized patches centred inside the FOV of a stack of images.

    Args:
        images: ``(N, C, H, W)`` uint8 images (zero-padded to a common size).
        labels: ``(N, H, W)`` uint8 targets.
        fovs: ``(N, H, W)`` bool FOV masks (False in the padding).
        window: side of the square window cut around each centre.
        vessel_fraction: share of centres drawn on foreground (label > 0) pixels; the rest
            are uniform inside the FOV.
        image_weights: ``(N,)`` probability of drawing each image (a multi-dataset experiment
            draws each dataset's images equally often, issue 22); ``None``: images are drawn
            uniformly (as their FOV pixels allow).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        fovs: Tensor,
        window: int,
        vessel_fraction: float = 0.0,
        image_weights: Tensor | None = None,
    ) -> None:
        self.window = window = require_int(window, "PatchSampler: window", 1)
        vessel_fraction = require_fraction(vessel_fraction, "PatchSampler: vessel_fraction")
        self.margin = window // 2 + 1
        self.vessel_fraction = vessel_fraction
        pad = (self.margin, self.margin, self.margin, self.margin)
        self.images = torch.nn.functional.pad(images, pad)
        self.labels = torch.nn.functional.pad(labels, pad)
        self.fovs = torch.nn.functional.pad(fovs, pad)
        self.vessels = (self.labels > 0) & self.fovs  # where vessel-centred patches may sit
        self.height, self.width = images.shape[-2:]
        self._offsets = torch.arange(window, device=images.device) - window // 2
        self.image_weights = None
        if image_weights is not None:
            w = torch.as_tensor(image_weights, dtype=torch.float64).cpu()
            if w.shape != (images.shape[0],) or not bool((w >= 0).all()) or float(w.sum()) <= 0:
                raise ValueError(
                    f"PatchSampler: image_weights must be {images.shape[0]} non-negative numbers "
                    f"with a positive sum, got {tuple(w.shape)}"
                )
            self.image_weights = w / w.sum()
            # per image, the bounding box of each mask a centre is drawn in (once, not per step)
            self._boxes = {"fov": self._bounding_boxes(self.fovs)}
            self._boxes["vessel"] = self._bounding_boxes(self.vessels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def _draw(self, n: int, where: str, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` centres on the True pixels of ``where``: ``"fov"`` or ``"vessel"``."""
        mask = self.fovs if where == "fov" else self.vessels
        if self.image_weights is not None:
            return self._draw_weighted(n, mask, self._boxes[where], gen)
        return self._draw_uniform(n, mask, gen)

    def _bounding_boxes(self, mask: Tensor) -> Tensor:
        """``(N, 4)`` rows ``y0, y1, x0, x1`` (inclusive, unpadded coordinates) of each
        image's True pixels in the padded ``mask``; ``y1 < y0`` where an image has none."""
        rows, cols = mask.any(2), mask.any(1)
        big = max(rows.shape[1], cols.shape[1])
        r = torch.arange(rows.shape[1], device=mask.device)
        c = torch.arange(cols.shape[1], device=mask.device)
        return (
            torch.stack(
                [
                    torch.where(rows, r, big).amin(1),
                    torch.where(rows, r, -big).amax(1),
                    torch.where(cols, c, big).amin(1),
                    torch.where(cols, c, -big).amax(1),
                ],
                1,
            )
            - self.margin
        )

    def _draw_weighted(
        self, n: int, mask: Tensor, boxes: Tensor, gen: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` images drawn by ``image_weights``, then a centre uniform over the True pixels
        of each drawn image's ``mask`` (rejection sampling inside that image's bounding box of
        the mask, keeping the image), so each image gets exactly its share whatever the size
        of its FOV."""
        assert self.image_weights is not None
        idx = torch.multinomial(self.image_weights, n, replacement=True, generator=gen)
        idx = idx.to(self.device)
        y0, y1, x0, x1 = boxes.unbind(1)
        if bool((y1[idx] < y0[idx]).any()):
            raise RuntimeError(
                "could not draw patch centres: an image's FOV (or vessel) mask is empty"
            )
        y = torch.zeros(n, dtype=torch.long, device=self.device)
        x = torch.zeros_like(y)
        todo = torch.arange(n, device=self.device)
        for _ in range(256):
            k, i = todo.numel(), idx[todo]
            u, v = torch.rand(2, k, generator=gen, dtype=torch.float64).to(self.device)
            ty = y0[i] + (u * (y1[i] - y0[i] + 1)).long()
            tx = x0[i] + (v * (x1[i] - x0[i] + 1)).long()
            ok = mask[i, ty + self.margin, tx + self.margin]
            y[todo[ok]], x[todo[ok]] = ty[ok], tx[ok]
            todo = todo[~ok]
            if todo.numel() == 0:
                return idx, y, x
        raise RuntimeError("could not draw patch centres: the FOV (or vessel) masks are empty")

    def _draw_uniform(
        self, n: int, mask: Tensor, gen: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Rejection sampling of ``n`` (image, y, x) uniformly over the True pixels of ``mask``
        per image (images chosen uniformly): memory-free, unlike a list of all FOV indices."""
        found: list[Tensor] = []
        total = 0
        num_images = mask.shape[0]
        for _ in range(64):
            k = max(4 * (n - total), 64)
            # drawn on the CPU and moved: the same seed gives the same centres on every device
            idx = torch.randint(num_images, (k,), generator=gen).to(self.device)
            y = torch.randint(self.height, (k,), generator=gen).to(self.device)
            x = torch.randint(self.width, (k,), generator=gen).to(self.device)
            ok = mask[idx, y + self.margin, x + self.margin]
            found.append(torch.stack([idx, y, x], 1)[ok])
            total += int(ok.sum())
            if total >= n:
                break
        else:
            raise RuntimeError("could not draw patch centres: the FOV (or vessel) masks are empty")
        out = torch.cat(found)[:n]
        return out[:, 0], out[:, 1], out[:, 2]

    def centres(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` patch centres: ``round(n * vessel_fraction)`` on vessels, the rest in the FOV."""
        n_vessel = round(n * self.vessel_fraction)
        parts = []
        if n_vessel:
            parts.append(self._draw(n_vessel, "vessel", gen))
        if n - n_vessel:
            parts.append(self._draw(n - n_vessel, "fov", gen))
        idx, y, x = (torch.cat(p) for p in zip(*parts))
        return idx, y, x

    def cut(self, idx: Tensor, y: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Gather windows centred at (y, x) of images ``idx``: image ``(n, C, w, w)`` uint8,
        label ``(n, w, w)``, fov ``(n, w, w)``; outside the image the window is zero / no-FOV."""
        rows = (y + self.margin)[:, None] + self._offsets  # (n, w)
        cols = (x + self.margin)[:, None] + self._offsets
        r, c, i = rows[:, :, None], cols[:, None, :], idx[:, None, None]
        image = self.images[i, :, r, c].permute(0, 3, 1, 2)  # advanced dims first: (n, w, w, C)
        return image.contiguous(), self.labels[i, r, c], self.fovs[i, r, c]

    def sample(self, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Draw and cut ``n`` patches: (image, label, fov, source image index)."""
        require_int(n, "PatchSampler.sample: n (patches per step, the batch size)", 1)
        gen = torch.Generator()  # CPU: CUDA's Philox would give other numbers for one seed
        gen.manual_seed(seed)
        idx, y, x = self.centres(n, gen)
        return (*self.cut(idx, y, x), idx)
