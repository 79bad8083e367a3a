"""GPU bench: the core API (``saliency_tf1.compat.core``) on a PyTorch ResNet-50.

Measures, on one model and one input, in one run (so every ratio is of two
numbers taken on the same machine at the same time):

* the floors: a ``--samples``-row (25) backward of rows already on the device,
  and the same rows numpy -> device -> numpy through the
  ``call_model_function`` (what any core-API method must at least pay); for
  occlusion, the forward of its occluded rows on the device and numpy ->
  device -> numpy, in batches of 64;
* SmoothGrad-25, IG-25 and Occlusion (32 px window, stride 16) through our
  core classes, PAIR's ``saliency.core`` 0.2.1 (``pip install saliency==0.2.1``)
  and captum, each from the numpy input to a numpy mask;
* correctness lines for the pairs whose definitions coincide (max
  ``|a - b| / max|b|``), so the table can be trusted. They run on a float64
  copy of the model with a float64 input: a deep ReLU network's input
  gradient is "shattered" (Balduzzi et al., ICML 2017, arXiv:1702.08591), so
  in float32 a one-ulp difference in how two libraries round a path point or a
  noisy copy (float32 vs float64 arithmetic) already moves a random ResNet-50's
  IG-25 mask by 5e-3 (its single-row gradients by up to 4e-2). In float64
  such rounding flips no ReLU: the same definition then agrees to ~1e-7
  (what is left is PAIR's float32 accumulators and captum's float32 step
  sizes), while a different rule, weight or convention shows at the percent
  level. ``--no-checks`` skips them (on a CPU they take minutes for a
  ResNet-50).

The model: ``torchvision.models.resnet50(weights=None)`` when torchvision
imports, else the same architecture written below in ``torch.nn``
(``--model resnet50-own`` forces it), or ``--model small`` (a 3-conv CNN) to
smoke-test on a CPU. Random weights (``torch.manual_seed(0)``); the explained
output is the logit of the class the model picks at the input.

The ``call_model_function`` takes NHWC float32 numpy rows (the core API's
layout, as the core classes pass it), makes an NCHW view of them on the
device, and returns NHWC numpy gradients (``INPUT_OUTPUT_GRADIENTS``) and/or
the explained logit (``OUTPUT_LAYER_VALUES``).

Needs torch and numpy only; torchvision, captum and saliency are optional
(their rows print ``n/a (package not installed)``). It runs without
TensorFlow: ``saliency_tf1`` imports TensorFlow only where a TF1 graph is
used, and nothing here uses one (the header says whether TensorFlow got
imported).

How ``saliency_tf1.compat.core`` is found: the repository root goes first on
``sys.path``, so ``import saliency_tf1`` is this checkout's package. In an
installed copy ``saliency_tf1.compat`` then imports as usual; in a bare
checkout it does not exist as a folder (setup.py's ``package_dir`` maps the
repository's top-level ``compat/`` to that name at install time), so
:func:`import_core` does what that mapping does: it loads
``compat/__init__.py`` as the package ``saliency_tf1.compat``
(``importlib.util.spec_from_file_location`` with
``submodule_search_locations=[compat/]``, registered in ``sys.modules``), and
its relative imports (``.core``, ``.call_model``) resolve inside ``compat/``.
No file is written (beyond Python's bytecode cache) and no other name becomes
importable. The package's hidden progress bars need no tqdm, so a bare torch
machine without it runs our rows.

On the GPU machine (Python 3.12, torch, torchvision, no TensorFlow, no
network), with the optional packages' wheels carried in a folder ``WHEELS``
(made elsewhere with ``pip download --no-deps --only-binary=:all:
--python-version 3.12 --platform manylinux_2_28_x86_64 --platform
manylinux2014_x86_64 -d WHEELS ...``): captum's rows need captum, tqdm,
matplotlib, contourpy, cycler, fonttools, kiwisolver, pyparsing,
python-dateutil and six (about 17 MB); PAIR's need saliency==0.2.1, scipy,
scikit-image, imageio, tifffile and lazy_loader (about 50 MB; its
``saliency.core`` imports scipy and scikit-image)::

    python3 -m pip install --no-index --no-deps WHEELS/*.whl
    python3 bench/bench_gpu.py --device cuda --repeats 20 --json out/bench_gpu.json

On a CPU, to smoke-test::

    python bench/bench_gpu.py --model small --size 64 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]

# The core API's keys (plain strings); replaced by saliency_tf1's own in import_core.
INPUT_OUTPUT_GRADIENTS = "INPUT_OUTPUT_GRADIENTS"
OUTPUT_LAYER_VALUES = "OUTPUT_LAYER_VALUES"
NA = "n/a (package not installed)"
#: Largest max relative difference of the float64 checks taken as rounding (PAIR and captum
#: keep float32 pieces: ~1e-7); a definitional mismatch (another rule, weight or
#: convention) is percent-sized.
TOLERANCE = 1e-5


# ----------------------------------------------------------------------------- imports


def import_core() -> types.ModuleType:
    """``saliency_tf1.compat.core``: installed, or from this checkout (see the docstring)."""
    global INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import saliency_tf1

    try:
        core = importlib.import_module("saliency_tf1.compat.core")
    except ModuleNotFoundError as err:
        if err.name != "saliency_tf1.compat":
            raise
        folder = REPO / "compat"
        spec = importlib.util.spec_from_file_location(
            "saliency_tf1.compat", folder / "__init__.py",
            submodule_search_locations=[str(folder)],
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {folder} as saliency_tf1.compat") from None
        compat = importlib.util.module_from_spec(spec)
        sys.modules["saliency_tf1.compat"] = compat
        try:
            spec.loader.exec_module(compat)
        except BaseException:
            del sys.modules["saliency_tf1.compat"]
            raise
        saliency_tf1.compat = compat  # type: ignore[attr-defined]
        core = importlib.import_module("saliency_tf1.compat.core")
    INPUT_OUTPUT_GRADIENTS = core.INPUT_OUTPUT_GRADIENTS
    OUTPUT_LAYER_VALUES = core.OUTPUT_LAYER_VALUES
    return core


def optional(module: str) -> types.ModuleType | None:
    """The module, or None when it (or something it needs) is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def version(dist: str) -> str:
    try:
        from importlib.metadata import version as dist_version

        return dist_version(dist)
    except Exception:
        return "not installed"


# ----------------------------------------------------------------------------- models


class Bottleneck(nn.Module):
    """ResNet-50's block: 1x1 reduce, 3x3 (the stride is here, as in v1.5), 1x1 expand x4."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return self.relu(h + shortcut)


class ResNet50(nn.Module):
    """ResNet-50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
    arXiv:1512.03385): 7x7 stem, bottleneck stages of 3-4-6-3 blocks (64-128-256-512
    wide), global average pool, 1000-way linear; 25,557,032 parameters, as torchvision's."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        channels = 64
        for i, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(channels, width, 2 if b == 0 and i > 0 else 1))
                channels = width * Bottleneck.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def small_cnn(classes: int = 10) -> nn.Module:
    """conv 3x3 (16) - ReLU - conv 3x3/2 (32) - ReLU - conv 3x3/2 (64) - ReLU - GAP - linear."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes),
    )


def build_net(name: str) -> tuple[nn.Module, str]:
    """The network for ``--model`` and a description of it."""
    torch.manual_seed(0)
    if name == "small":
        return small_cnn(), "small CNN (3 conv)"
    if name == "resnet50":
        try:
            import torchvision
        except ImportError:
            pass
        else:
            return (torchvision.models.resnet50(weights=None),
                    f"ResNet-50 (torchvision {torchvision.__version__}, random weights)")
    return ResNet50(), "ResNet-50 (this script's torch.nn copy, random weights)"


class TorchModel:
    """A torch classifier with one explained logit, for the core API and for captum.

    Args:
      net: maps NCHW float32 tensors to ``[batch, classes]`` logits.
      device: where it runs.
      channels_last: store the weights channels-last (the input views already are).
      dtype: the float type it runs in (float64 for the correctness checks).
    """

    def __init__(self, net: nn.Module, device: torch.device, channels_last: bool = False,
                 dtype: torch.dtype = torch.float32) -> None:
        self.device = device
        self.dtype = dtype
        self.np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.net = net.to(device=device, dtype=dtype).eval()
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.target = 0

    def to_device(self, x_nhwc: np.ndarray) -> torch.Tensor:
        """NHWC numpy rows -> an NCHW view of them, in the model's dtype, on the device."""
        host = torch.from_numpy(np.ascontiguousarray(x_nhwc, dtype=self.np_dtype))
        return host.to(self.device).permute(0, 3, 1, 2)

    @staticmethod
    def to_host(t_nchw: torch.Tensor) -> np.ndarray:
        """An NCHW device tensor -> NHWC numpy."""
        return t_nchw.detach().permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def logit(self, xt: torch.Tensor) -> torch.Tensor:
        return self.net(xt)[:, self.target]

    def gradients(self, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d logit / d xt, logit)`` of every row, on the device."""
        with torch.enable_grad():
            leaf = xt.detach().requires_grad_(True)
            y = self.logit(leaf)
            (grad,) = torch.autograd.grad(y.sum(), leaf)
        return grad, y.detach()

    def outputs(self, xt: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.logit(xt)

    def call_model_function(
        self,
        x_value_batch: np.ndarray,
        call_model_args: Any = None,
        expected_keys: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """The core API's model function: ``INPUT_OUTPUT_GRADIENTS`` and/or ``OUTPUT_LAYER_VALUES``.

        ``x_value_batch``: NHWC rows (any float dtype; run in the model's dtype).
        ``call_model_args`` is not used (one fixed class).
        """
        keys = [INPUT_OUTPUT_GRADIENTS] if expected_keys is None else list(expected_keys)
        unknown = [k for k in keys if k not in (INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES)]
        if unknown:
            raise ValueError(
                f"expected_keys: this model serves {INPUT_OUTPUT_GRADIENTS} and "
                f"{OUTPUT_LAYER_VALUES}, got {unknown}"
            )
        xt = self.to_device(x_value_batch)
        out: dict[str, np.ndarray] = {}
        if INPUT_OUTPUT_GRADIENTS in keys:
            grad, y = self.gradients(xt)
            out[INPUT_OUTPUT_GRADIENTS] = self.to_host(grad)
        else:
            y = self.outputs(xt)
        if OUTPUT_LAYER_VALUES in keys:
            out[OUTPUT_LAYER_VALUES] = y.cpu().numpy()
        return out


# ----------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def medians(fns: Mapping[str, Callable[[], Any]], repeats: int, warmup: int,
            device: torch.device) -> dict[str, float]:
    """Median seconds of each function, timed round-robin (load drifts hit all alike)
    after ``warmup`` untimed calls each; the device is synchronised around every call."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
        synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max|b|``: the largest difference on the scale of the mask."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a - b))) / (scale if scale > 0 else 1.0)


# ----------------------------------------------------------------------------- bench


def chunks(rows: np.ndarray | torch.Tensor, size: int) -> list[Any]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    core = import_core()
    pair = optional("saliency.core")
    captum = optional("captum.attr")

    device = torch.device(args.device)
    net, model_name = build_net(args.model)
    model = TorchModel(net, device, channels_last=args.channels_last)
    cmf = model.call_model_function
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.size, args.size, 3)).astype(np.float32)
    with torch.inference_mode():
        model.target = int(model.net(model.to_device(x[None])).argmax(1).item())

    n = args.samples
    occ_size, occ_stride, occ_batch = args.occlusion_size, args.occlusion_stride, 64
    starts = np.arange(0, args.size - occ_size + 1, occ_stride)
    occ_rows = len(starts) ** 2
    stdev = 0.15 * float(x.max() - x.min())  # PAIR's stdev_spread=0.15

    # The floors' rows: n noisy copies; the occluded copies of the occlusion bench.
    noisy = (x + rng.normal(0, stdev, (n,) + x.shape)).astype(np.float32)
    occluded = np.repeat(x[None], occ_rows, axis=0)
    for k, (r, c) in enumerate((r, c) for r in starts for c in starts):
        occluded[k, r:r + occ_size, c:c + occ_size] = 0.0
    noisy_dev = model.to_device(noisy)
    occluded_dev = model.to_device(occluded)

    def host_forward() -> list[np.ndarray]:
        return [cmf(rows, expected_keys=[OUTPUT_LAYER_VALUES])[OUTPUT_LAYER_VALUES]
                for rows in chunks(occluded, occ_batch)]

    def x_nchw() -> torch.Tensor:  # captum's rows start from the numpy input too
        return model.to_device(x[None])

    ours_sg = core.GradientSaliency()
    ours_ig = core.IntegratedGradients()
    ours_occ = core.Occlusion()
    occ_label = f"Occlusion {occ_size} px, stride {occ_stride} ({occ_rows} rows)"

    # (label, function or None where its package is missing, floor group)
    rows: list[tuple[str, Callable[[], Any] | None, str]] = [
        (f"floor: {n}-row backward on the device",
         lambda: model.gradients(noisy_dev), "grad"),
        (f"floor: the same {n} rows numpy -> device -> numpy",
         lambda: cmf(noisy, expected_keys=[INPUT_OUTPUT_GRADIENTS]), "grad"),
        (f"SmoothGrad-{n}, ours (seed=0)",
         lambda: ours_sg.GetSmoothedMask(x, cmf, nsamples=n, seed=0, batch_size=n), "grad"),
        (f"SmoothGrad-{n}, PAIR core 0.2.1",
         pair and (lambda: pair.GradientSaliency().GetSmoothedMask(x, cmf, nsamples=n)),
         "grad"),
        # smoothgrad_sq of the signed gradient: PAIR's magnitude=True (mean of squares).
        (f"SmoothGrad-{n}, captum NoiseTunnel (noise on the device)",
         captum and (lambda: model.to_host(captum.NoiseTunnel(captum.Saliency(model.net))
                                           .attribute(x_nchw(), nt_type="smoothgrad_sq",
                                                      nt_samples=n, nt_samples_batch_size=n,
                                                      stdevs=stdev, target=model.target,
                                                      abs=False))),
         "grad"),
        (f"IG-{n}, ours",
         lambda: ours_ig.GetMask(x, cmf, x_steps=n, batch_size=n), "grad"),
        (f"IG-{n}, PAIR core with batch_size={n}",
         pair and (lambda: pair.IntegratedGradients().GetMask(x, cmf, x_steps=n, batch_size=n)),
         "grad"),
        # PAIR's rule evaluates at alpha = linspace(0, 1, n) with weights 1/n; captum's
        # riemann_trapezoid evaluates at the same n points with the same weights 1/n,
        # halved at both ends, so it is the closest to PAIR's and the model work is
        # identical (riemann_left would move the points to linspace(0, 1 - 1/n, n)).
        # Its weights sum to (n-1)/n: it is our rule="trapezoid" times (n-1)/n
        # (checked below).
        (f"IG-{n}, captum (riemann_trapezoid, internal_batch_size={n})",
         captum and (lambda: model.to_host(captum.IntegratedGradients(model.net).attribute(
             x_nchw(), baselines=0.0, target=model.target, n_steps=n,
             method="riemann_trapezoid", internal_batch_size=n))),
         "grad"),
        (f"floor: {occ_rows}-row forward on the device (batches of {occ_batch})",
         lambda: [model.outputs(rows) for rows in chunks(occluded_dev, occ_batch)], "occ"),
        (f"floor: {occ_rows}-row forward numpy -> device -> numpy (batches of {occ_batch})",
         host_forward, "occ"),
        (f"{occ_label}, ours (batch_size={occ_batch})",
         lambda: ours_occ.GetMask(x, cmf, size=occ_size, stride=occ_stride,
                                  batch_size=occ_batch), "occ"),
        (f"{occ_label}, captum (perturbations_per_eval={occ_batch})",
         captum and (lambda: model.to_host(captum.Occlusion(model.net).attribute(
             x_nchw(), sliding_window_shapes=(3, occ_size, occ_size),
             strides=(3, occ_stride, occ_stride), baselines=0.0, target=model.target,
             perturbations_per_eval=occ_batch))),
         "occ"),
    ]
    timed = {label: fn for label, fn, _ in rows if fn}
    secs = medians(timed, args.repeats, args.warmup, device)
    # Each group's floors are its first two rows (on the device, then numpy -> numpy).
    floors: dict[str, list[float]] = {}
    for label, _, group in rows:
        if label.startswith("floor:"):
            floors.setdefault(group, []).append(secs[label])
    table = []
    for label, fn, group in rows:
        if not fn:
            table.append({"work": label, "ms": None, "x_device_floor": None,
                          "x_host_floor": None, "note": NA})
            continue
        dev_floor, host_floor = floors[group]
        table.append({"work": label, "ms": 1e3 * secs[label],
                      "x_device_floor": secs[label] / dev_floor,
                      "x_host_floor": secs[label] / host_floor, "note": ""})

    checks = correctness(core, pair, captum, model, x, n, stdev, occ_size, occ_stride,
                         occ_batch) if args.checks else []
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine() or "cpu"
    return {
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "captum": version("captum") if captum else "not installed",
        "saliency": version("saliency") if pair else "not installed",
        "device": str(device),
        "device_name": device_name,
        "cpus": os.cpu_count(),
        "model": model_name,
        "size": args.size,
        "target": model.target,
        "repeats": args.repeats,
        "tf32": bool(device.type == "cuda" and torch.backends.cudnn.allow_tf32),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "rows": table,
        "checks": checks,
    }


def correctness(core: Any, pair: Any, captum: Any, model: TorchModel, x: np.ndarray, n: int,
                stdev: float, occ_size: int, occ_stride: int,
                occ_batch: int) -> list[dict[str, Any]]:
    """Max relative differences of the pairs whose definitions coincide, on a float64 copy
    of the model and of ``x`` (see the module docstring)."""
    target = model.target
    model = TorchModel(copy.deepcopy(model.net), model.device, dtype=torch.float64)
    model.target = target
    x = x.astype(np.float64)
    cmf = model.call_model_function
    checks: list[dict[str, Any]] = []

    def add(pair_name: str, compute: Callable[[], tuple[np.ndarray, np.ndarray]] | None,
            need: str = "") -> None:
        if compute is None:
            checks.append({"pair": pair_name, "max_rel_diff": None,
                           "note": f"n/a (package not installed: {need})"})
            return
        a, b = compute()
        checks.append({"pair": pair_name, "max_rel_diff": max_rel_diff(a, b), "note": ""})

    def sg_vs_pair() -> tuple[np.ndarray, np.ndarray]:
        np.random.seed(1)
        ours = core.GradientSaliency().GetSmoothedMask(x, cmf, nsamples=n, seed=None,
                                                       batch_size=n)
        np.random.seed(1)
        return ours, pair.GradientSaliency().GetSmoothedMask(x, cmf, nsamples=n)

    def sg_batch_sizes() -> tuple[np.ndarray, np.ndarray]:
        sg = core.GradientSaliency()
        return (sg.GetSmoothedMask(x, cmf, nsamples=n, seed=0, batch_size=n),
                sg.GetSmoothedMask(x, cmf, nsamples=n, seed=0, batch_size=max(1, n // 4)))

    def ig_vs_pair() -> tuple[np.ndarray, np.ndarray]:
        return (core.IntegratedGradients().GetMask(x, cmf, x_steps=n, batch_size=n),
                pair.IntegratedGradients().GetMask(x, cmf, x_steps=n, batch_size=n))

    def ig_vs_captum() -> tuple[np.ndarray, np.ndarray]:
        theirs = captum.IntegratedGradients(model.net).attribute(
            model.to_device(x[None]), baselines=0.0, target=model.target, n_steps=n,
            method="riemann_trapezoid", internal_batch_size=n)
        ours = core.IntegratedGradients().GetMask(x, cmf, x_steps=n, batch_size=n,
                                                  rule="trapezoid")
        # captum's trapezoid weights are 1/n (halved at the ends), ours 1/(n-1).
        return ours * ((n - 1) / n), model.to_host(theirs)[0]

    def occ_vs_captum() -> tuple[np.ndarray, np.ndarray]:
        theirs = captum.Occlusion(model.net).attribute(
            model.to_device(x[None]), sliding_window_shapes=(3, occ_size, occ_size),
            strides=(3, occ_stride, occ_stride), baselines=0.0, target=model.target,
            perturbations_per_eval=occ_batch)
        ours = core.Occlusion().GetMask(x, cmf, size=occ_size, stride=occ_stride,
                                        normalize=True, batch_size=occ_batch)
        return ours, model.to_host(theirs)[0]

    add(f"SmoothGrad-{n}: ours (seed=None) vs PAIR core, both after np.random.seed(1)",
        pair and sg_vs_pair, "saliency")
    add(f"SmoothGrad-{n}: ours seed=0, batch_size={n} vs {max(1, n // 4)}",
        sg_batch_sizes)
    add(f"IG-{n}: ours vs PAIR core (same steps, PAIR's rule)", pair and ig_vs_pair,
        "saliency")
    add(f"IG-{n}: ours rule='trapezoid' x {n - 1}/{n} vs captum riemann_trapezoid",
        captum and ig_vs_captum, "captum")
    add("Occlusion: ours normalize=True (mean over windows) vs captum",
        captum and occ_vs_captum, "captum")
    return checks


def fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def print_report(result: dict[str, Any]) -> None:
    print(f"bench_gpu {result['date']} | torch {result['torch']} | numpy {result['numpy']} | "
          f"captum {result['captum']} | saliency {result['saliency']} | device "
          f"{result['device']} ({result['device_name']}) | {result['cpus']} CPUs | "
          f"{result['model']} {result['size']}x{result['size']}, class {result['target']} | "
          f"median of {result['repeats']} | TF32 {'on' if result['tf32'] else 'off'} | "
          f"TensorFlow imported: {'yes' if result['tensorflow_imported'] else 'no'}")
    print()
    print("| work | ms | x device floor | x host floor |")
    print("| --- | ---: | ---: | ---: |")
    for row in result["rows"]:
        ms = row["note"] or fmt(row["ms"], 1)
        print(f"| {row['work']} | {ms} | {fmt(row['x_device_floor'], 2)} | "
              f"{fmt(row['x_host_floor'], 2)} |")
    if not result["checks"]:
        print("\nCorrectness checks skipped (--no-checks).")
        sys.stdout.flush()
        return
    print()
    print(f"Correctness (max |a - b| / max |b|, float64 copy of the model and input; "
          f"ok below {TOLERANCE:g}):")
    for check in result["checks"]:
        diff = check["max_rel_diff"]
        value = check["note"] or f"{diff:.2e} ({'ok' if diff < TOLERANCE else 'MISMATCH'})"
        print(f"  {check['pair']}: {value}")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("resnet50", "resnet50-own", "small"),
                        default="resnet50",
                        help="resnet50: torchvision's if it imports, else this script's copy")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per row first")
    parser.add_argument("--samples", type=int, default=25,
                        help="SmoothGrad samples and IG steps (rows of the gradient floors)")
    parser.add_argument("--occlusion-size", type=int, default=32)
    parser.add_argument("--occlusion-stride", type=int, default=16)
    parser.add_argument("--channels-last", action="store_true",
                        help="store the weights channels-last (the inputs already are)")
    parser.add_argument("--checks", action=argparse.BooleanOptionalAction, default=True,
                        help="the float64 correctness checks (on by default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    for name in ("size", "repeats", "samples", "occlusion_size", "occlusion_stride"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected >= 0, got {args.warmup}")
    if args.occlusion_size > args.size:
        parser.error(f"--occlusion-size: expected <= --size {args.size}, "
                     f"got {args.occlusion_size}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    print_report(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
