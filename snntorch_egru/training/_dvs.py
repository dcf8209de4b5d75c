"""DVS128 Gesture pieces of the paper's recipe (``egru-model.md`` §8).

- :class:`DVSFrames`: tonic frames ``[T, 2, 128, 128]`` (event counts) to the network's input:
  polarities averaged to one channel, divided by 19.0 (train) or 18.5 (test), padded or cut to
  68 steps, optionally sum-pooled to a smaller ``frame_size`` (the small CPU option).
- :class:`FrameAugment`: the recipe's training augmentation, RandomResizedCrop(scale 0.6-1),
  RandomPerspective and RandomRotation(25 deg), written in plain torch as ONE composite
  warp (a 3x3 homography in normalised coordinates applied with a single bilinear
  ``grid_sample``), the same warp for every frame of a sample. Random numbers come from
  torch's global generator, so a run is reproducible under ``torch.manual_seed`` (the
  loop seeds every epoch); used on the training set only.
- :class:`AlexNetFrames`: the recipe's per-frame AlexNet-like CNN (64k11s4, 192k5, 384k3,
  256k3, 256k3), 2.59 M parameters for one input channel. ``layout="evnn"`` (the recipe, what
  ``--cnn alexnet`` builds) max-pools after conv1 to conv4, so that conv5 runs at 1x1 on
  128-pixel frames, flattens to 256 and applies Linear(256, 512) **without** ReLU (signed
  features into the EGRU) -> dropout: about 118 M MACs per frame. ``layout="gap"``
  (``--cnn alexnet-gap``, the package's earlier variant) pools after conv1, conv2 and conv5,
  then global average pooling -> Linear(256, 512) -> ReLU -> dropout: about 181 M MACs per
  frame, any frame of at least 63 pixels.
- :func:`conv_macs_per_frame`: multiply-accumulates of a front end for one frame, counted
  from its convolution and linear layers' shapes.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ._models import FrameCNN

__all__ = [
    "DVSFrames",
    "FrameAugment",
    "AlexNetFrames",
    "warp",
    "perspective_matrix",
    "TRAIN_SCALE",
    "TEST_SCALE",
    "ALEXNET_MIN_SIZE",
    "CNNS",
    "evnn_alexnet_sizes",
    "conv_macs_per_frame",
]

CNNS = ("alexnet", "alexnet-gap", "small")

TRAIN_SCALE = 19.0
TEST_SCALE = 18.5
ALEXNET_MIN_SIZE = 63  # smallest frame for which the last 3x3 max pool still has a 3x3 input


class DVSFrames:
    """Tonic frames ``[T, P, H, W]`` (counts) to float ``[steps, 1 or P, S, S]``.

    Args:
        steps: number of frames kept (short slices are zero-padded at the end).
        scale: divisor of the counts (19.0 for training, 18.5 for testing in the recipe).
        size: output side ``S``; smaller than the sensor: sum-pooled (counts per pooled pixel).
        polarity: ``"mean"`` (the recipe: both polarities averaged to one channel) or
            ``"separate"`` (two channels).
    """

    def __init__(self, steps: int, scale: float, size: int = 128, polarity: str = "mean") -> None:
        if polarity not in ("mean", "separate"):
            raise ValueError(f"polarity must be 'mean' or 'separate', got {polarity!r}")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"frame size must be a positive int, got {size!r}")
        self.steps, self.scale, self.size, self.polarity = steps, float(scale), size, polarity

    def __call__(self, frames) -> torch.Tensor:
        x = torch.as_tensor(frames, dtype=torch.float32)
        if x.shape[0] < self.steps:
            x = torch.cat([x, x.new_zeros((self.steps - x.shape[0],) + tuple(x.shape[1:]))])
        x = x[: self.steps]
        if self.polarity == "mean":
            x = x.mean(1, keepdim=True)
        if x.shape[-1] != self.size:
            x = nn.functional.adaptive_avg_pool2d(x, self.size) * (x.shape[-1] / self.size) ** 2
        return x / self.scale


# ----------------------------------------------------------------------------- augmentation
def warp(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample ``x [..., H, W]`` at ``matrix @ (u, v, 1)`` for every output pixel.

    ``(u, v)`` are normalised output coordinates in ``[-1, 1]`` (pixel centres,
    ``align_corners=False``); ``matrix`` (3x3) maps them to normalised input coordinates
    (a homography). Bilinear, zeros outside the input. The identity matrix returns ``x``.
    """
    H, W = x.shape[-2:]
    lead = x.shape[:-2]
    m = matrix.to(dtype=torch.float32, device=x.device)
    v, u = torch.meshgrid(
        (torch.arange(H, device=x.device, dtype=torch.float32) * 2 + 1) / H - 1,
        (torch.arange(W, device=x.device, dtype=torch.float32) * 2 + 1) / W - 1,
        indexing="ij",
    )
    pts = torch.stack([u, v, torch.ones_like(u)], -1) @ m.t()  # [H, W, 3]
    grid = (pts[..., :2] / pts[..., 2:]).unsqueeze(0)
    flat = x.reshape((1, -1, H, W))
    out = nn.functional.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(lead + (H, W))


def perspective_matrix(src: Sequence[Tuple[float, float]], dst: Sequence[Tuple[float, float]]) -> torch.Tensor:
    """The 3x3 homography (float64) mapping the four points ``src`` to ``dst``."""
    A, b = [], []
    for (x, y), (X, Y) in zip(src, dst):
        A.append([x, y, 1, 0, 0, 0, -X * x, -X * y])
        A.append([0, 0, 0, x, y, 1, -Y * x, -Y * y])
        b += [X, Y]
    h = torch.linalg.solve(torch.tensor(A, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    return torch.cat([h, h.new_ones(1)]).reshape(3, 3)


class FrameAugment:
    """The recipe's frame augmentation (training only), one random warp per sample.

    Composite of, in this order, RandomResizedCrop(scale ``crop_scale``, aspect ratio
    3/4-4/3, resized back to the input size), RandomPerspective(``distortion``, applied
    with probability ``perspective_p``) and RandomRotation(+-``degrees``), the same
    parameters as torchvision's defaults for these transforms. Input ``[T, C, H, W]``
    (or any ``[..., H, W]``); output of the same shape.
    """

    def __init__(
        self,
        crop_scale: Tuple[float, float] = (0.6, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
        distortion: float = 0.5,
        perspective_p: float = 0.5,
        degrees: float = 25.0,
    ) -> None:
        self.crop_scale, self.ratio = crop_scale, ratio
        self.distortion, self.perspective_p, self.degrees = distortion, perspective_p, degrees

    def _u(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(()))

    def sample_matrix(self, H: int, W: int) -> torch.Tensor:
        """One random output->input homography (float64) in normalised coordinates."""
        # crop: as torchvision, 10 tries at a random area/aspect, else the whole frame
        cw, ch, cx, cy = 1.0, 1.0, 0.0, 0.0
        for _ in range(10):
            area = self._u(*self.crop_scale)
            r = math.exp(self._u(math.log(self.ratio[0]), math.log(self.ratio[1])))
            w, h = math.sqrt(area * r), math.sqrt(area / r)  # fractions of the side
            if w <= 1 and h <= 1:
                cw, ch = w, h
                cx, cy = self._u(-(1 - w), 1 - w), self._u(-(1 - h), 1 - h)
                break
        crop = torch.tensor([[cw, 0, cx], [0, ch, cy], [0, 0, 1]], dtype=torch.float64)
        persp = torch.eye(3, dtype=torch.float64)
        if float(torch.rand(())) < self.perspective_p:
            d = self.distortion
            corners = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
            moved = [
                (cx_ - sx * self._u(0, d), cy_ - sy * self._u(0, d))
                for (cx_, cy_), (sx, sy) in zip(corners, [(-1, -1), (1, -1), (1, 1), (-1, 1)])
            ]
            persp = perspective_matrix(moved, corners)  # output point (moved corner) -> input corner
        a = math.radians(self._u(-self.degrees, self.degrees))
        # rotation about the centre in pixel units (normalised axes are scaled by W/2, H/2)
        S = torch.tensor([[W / 2, 0, 0], [0, H / 2, 0], [0, 0, 1]], dtype=torch.float64)
        R = torch.tensor(
            [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=torch.float64
        )
        rot = torch.linalg.inv(S) @ R @ S
        return crop @ persp @ rot

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return warp(x, self.sample_matrix(x.shape[-2], x.shape[-1]))


class TrainFrames:
    """``DVSFrames`` followed by ``FrameAugment``: the training-set transform."""

    def __init__(self, frames: DVSFrames, augment: Optional[FrameAugment]) -> None:
        self.frames, self.augment = frames, augment

    def __call__(self, raw) -> torch.Tensor:
        x = self.frames(raw)
        return x if self.augment is None else self.augment(x)


# ----------------------------------------------------------------------------- CNN
def _evnn_side(size: int) -> int:
    """Side of the recipe CNN's last feature map for ``size``-pixel frames (0: too small)."""
    s = (size + 2 * 2 - 11) // 4 + 1  # conv1
    for _ in range(4):  # max pools after conv1 .. conv4 (3x3, stride 2)
        s = (s - 3) // 2 + 1 if s >= 3 else 0
    return s


def evnn_alexnet_sizes(limit: int = 512) -> Tuple[int, int]:
    """``(smallest, largest)`` frame side for which the recipe's CNN ends at 1x1 (it flattens to 256)."""
    ok = [s for s in range(1, limit + 1) if _evnn_side(s) == 1]
    return ok[0], ok[-1]


class AlexNetFrames(FrameCNN):
    """The recipe's per-frame AlexNet-like CNN: ``[T, B, C, S, S]`` frames to ``[T, B, features]``.

    ``layout="evnn"`` (the recipe): Conv(C, 64, 11, stride 4, pad 2) -> ReLU -> MaxPool(3, 2) ->
    Conv(64, 192, 5, pad 2) -> ReLU -> MaxPool(3, 2) -> Conv(192, 384, 3, pad 1) -> ReLU ->
    MaxPool(3, 2) -> Conv(384, 256, 3, pad 1) -> ReLU -> MaxPool(3, 2) -> Conv(256, 256, 3, pad 1)
    -> ReLU -> Flatten (256 at 1x1) -> Linear(256, features) -> Dropout(dropout); no ReLU after
    the Linear. ``S`` must be in :func:`evnn_alexnet_sizes` (127-190; the recipe uses 128).

    ``layout="gap"``: pools after conv1, conv2 and conv5 only, then global average pooling ->
    Linear(256, features) -> ReLU -> Dropout(dropout); ``S`` at least 63.
    """

    def __init__(
        self, in_channels: int = 1, features: int = 512, dropout: float = 0.6321, layout: str = "evnn"
    ) -> None:
        nn.Module.__init__(self)
        if layout not in ("evnn", "gap"):
            raise ValueError(f"layout must be 'evnn' or 'gap', got {layout!r}")
        self.layout = layout
        evnn = layout == "evnn"
        layers = [
            nn.Conv2d(in_channels, 64, 11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            *([nn.MaxPool2d(3, 2)] if evnn else []),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            *([nn.MaxPool2d(3, 2)] if evnn else []),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
        ]
        if evnn:
            layers += [nn.Flatten(), nn.Linear(256, features), nn.Dropout(dropout)]
        else:
            layers += [
                nn.MaxPool2d(3, 2),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(256, features),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
        self.net = nn.Sequential(*layers)
        self.features = features

    def check_size(self, h: int, w: int) -> None:
        """Raise ``ValueError`` unless ``h x w`` frames fit this layout."""
        if self.layout == "evnn":
            lo, hi = evnn_alexnet_sizes()
            if not (lo <= h <= hi and lo <= w <= hi):
                raise ValueError(
                    f"the recipe's AlexNet-like CNN flattens a 1x1 map and needs frames of {lo} to {hi} "
                    f"pixels, got {(h, w)} (use --frame-size 128, --cnn alexnet-gap for >= "
                    f"{ALEXNET_MIN_SIZE} pixels, or --cnn small for small frames)"
                )
        elif h < ALEXNET_MIN_SIZE or w < ALEXNET_MIN_SIZE:
            raise ValueError(
                f"the AlexNet-like CNN needs frames of at least {ALEXNET_MIN_SIZE}x{ALEXNET_MIN_SIZE}, "
                f"got {(h, w)} (use --frame-size 128, or --cnn small for small frames)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size(x.shape[-2], x.shape[-1])
        return super().forward(x)


def conv_macs_per_frame(frontend: nn.Module, in_channels: int, size: int) -> int:
    """Multiply-accumulates of ``frontend`` (a :class:`FrameCNN`) for one ``size x size`` frame.

    Counts each ``Conv2d`` as ``C_out * C_in/groups * k_h * k_w * H_out * W_out`` and each
    ``Linear`` as ``in * out`` (pooling, activations and biases are not counted), from the
    shapes seen in one forward pass of a zero frame.
    """
    total = [0]

    def count(m, inp, out):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total[0] += m.out_channels * (m.in_channels // m.groups) * kh * kw * out.shape[-2] * out.shape[-1]
        elif isinstance(m, nn.Linear):
            total[0] += m.in_features * m.out_features

    net = getattr(frontend, "net", frontend)
    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            was = net.training
            net.eval()
            net(torch.zeros(1, in_channels, size, size))
            net.train(was)
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def build_frontend(cnn: str, in_channels: int, frame_size: int, dropout: float = 0.6321) -> FrameCNN:
    """The DVS front end named ``cnn``: ``"alexnet"`` (the recipe, 512 features), ``"alexnet-gap"``
    (global-average-pool variant, 512) or ``"small"`` (256)."""
    if cnn in ("alexnet", "alexnet-gap"):
        net = AlexNetFrames(in_channels, 512, dropout, layout="evnn" if cnn == "alexnet" else "gap")
        try:
            net.check_size(frame_size, frame_size)
        except ValueError as err:
            raise ValueError(f"--cnn {cnn} with --frame-size {frame_size}: {err}") from None
        return net
    if cnn == "small":
        return FrameCNN(in_channels, 256)
    raise ValueError(f"--cnn must be one of {', '.join(CNNS)}, got {cnn!r}")
