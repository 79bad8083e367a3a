"""The demo: its data, and a reduced run (few steps, images and methods) that is deterministic.

The full demo (every method, 300 steps, 16 images) is what ``make demo``
runs; here it runs small, twice with one seed (once through the command
line), and must give the same scores and masks, with a table whose numbers
are the localisation of the masks it saved.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from saliency_tf1.cli import main
from saliency_tf1.datasets import CLASS_NAMES, ShapesDataset, dilate, make_shapes
from saliency_tf1.demo import _pick_shown, format_table, run_demo
from saliency_tf1.streaming import read_manifest

SMALL = {"n_train": 160, "n_explain": 3, "n_show": 2, "steps": 8,
         "methods": ["gradient", "gradcam", "occlusion"]}


def test_make_shapes_is_seeded_balanced_and_in_range():
    a, b, c = make_shapes(40, seed=7), make_shapes(40, seed=7), make_shapes(40, seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.regions, b.regions)
    assert not np.array_equal(a.images, c.images)
    assert a.images.dtype == np.float32 and a.images.min() >= 0 and a.images.max() <= 1
    assert np.bincount(a.labels, minlength=len(CLASS_NAMES)).tolist() == [10] * 4
    # The shape is painted in one colour over its region.
    for image, region in zip(a.images[:5], a.regions[:5]):
        assert np.ptp(image[region], axis=0).max() == 0
    for size in (16, 30, 48):
        assert make_shapes(2, size=size).images.shape == (2, size, size, 3)


def test_informative_region_is_the_shape_grown_by_the_margin():
    region = np.zeros((1, 10, 10), bool)
    region[0, 3:6, 4:8] = True  # a 3 x 4 rectangle
    data = ShapesDataset(np.zeros((1, 10, 10, 3), np.float32), np.zeros(1, np.int64), region)
    np.testing.assert_array_equal(data.informative(0), region)
    grown = data.informative(1)
    expected = np.zeros((10, 10), bool)
    expected[2:7, 3:9] = True  # 5 x 6
    np.testing.assert_array_equal(grown[0], expected)
    assert data.informative(2)[0].sum() == 7 * 8
    # Against brute force on generated shapes: within Chebyshev distance 1 of the shape.
    shapes = make_shapes(4, seed=1).regions
    ys, xs = np.mgrid[0:32, 0:32]
    for shape, got in zip(shapes, dilate(shapes, 1)):
        py, px = np.nonzero(shape)
        dist = np.maximum(np.abs(ys[..., None] - py), np.abs(xs[..., None] - px)).min(-1)
        np.testing.assert_array_equal(got, dist <= 1)
    with pytest.raises(ValueError, match="margin"):
        data.informative(-1)


def test_pick_shown_takes_one_per_class_first():
    assert _pick_shown(np.array([2, 2, 0, 1, 0]), 4, 4) == [2, 3, 0, 1]
    assert _pick_shown(np.array([1, 1, 1]), 2, 4) == [0, 1]


def _energy(mask, region):
    """Independent of saliency_tf1.metrics: share of sum(|mask| over channels) inside."""
    mass = np.abs(mask).sum(-1) if mask.ndim == 3 else np.abs(mask)
    return mass[region].sum() / mass.sum()


def _scores_only(table: str) -> str:
    """The markdown table without its time column (times differ run to run)."""
    return "\n".join(line.rsplit("|", 2)[0] for line in table.splitlines()
                     if line.startswith("|"))


def test_reduced_demo_is_deterministic_and_its_table_is_its_masks(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "cli"), "--seed", "3", "--train", "160",
                 "--images", "3", "--show", "2", "--steps", "8", "--method",
                 ",".join(SMALL["methods"]), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    lines = []
    result = run_demo(str(tmp_path / "api"), seed=3, log=lines.append, progress=False, **SMALL)

    for name in ("demo_masks.png", "demo_masks.npz", "demo_table.md"):
        assert (tmp_path / "cli" / name).is_file() and (tmp_path / "api" / name).is_file()
    first, second = (np.load(tmp_path / d / "demo_masks.npz") for d in ("cli", "api"))
    assert sorted(first.files) == sorted(second.files)
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    tables = [(tmp_path / d / "demo_table.md").read_text() for d in ("cli", "api")]
    assert _scores_only(tables[0]) == _scores_only(tables[1])

    # The printed table is the returned scores, which are the saved masks' localisation.
    regions = second["informative"]
    np.testing.assert_array_equal(regions, dilate(second["regions"], 1))
    assert result["chance"] == pytest.approx(regions.mean())
    assert set(result["scores"]) == set(SMALL["methods"])
    for name, score in result["scores"].items():
        masks = second[name]
        assert len(masks) == 3
        energies = [_energy(m, r) for m, r in zip(masks, regions)]
        assert score["energy_inside"] == pytest.approx(np.mean(energies), rel=1e-6)
        hits = [r.ravel()[np.argmax(np.abs(m).sum(-1).ravel())] for m, r in zip(masks, regions)]
        assert score["pointing_game"] == pytest.approx(np.mean(hits))
    # The printed table (rounded) holds the same scores; only the times differ.
    rows = [ln for ln in printed.splitlines() if re.match(r"(Gradient|Grad-CAM|Occlusion)\s", ln)]
    assert len(rows) == len(SMALL["methods"])
    assert [r.rsplit(None, 1)[0] for r in rows] == [
        r.rsplit(None, 1)[0] for r in format_table(result["scores"]).splitlines()[1:]]
    assert "held-out accuracy" in printed and "held-out accuracy" in lines[0]
    # The run layout and its report: one record per image, its metrics the per-image scores.
    assert result["report"] == str(tmp_path / "api" / "report" / "index.html")
    assert (tmp_path / "cli" / "report" / "index.html").is_file()
    records = read_manifest(tmp_path / "api")
    assert len(records) == 3 and all(r["error"] is None for r in records)
    for name, score in result["scores"].items():
        energies = [r["metrics"][name]["energy_inside"] for r in records]
        assert np.mean(energies) == pytest.approx(score["energy_inside"], rel=1e-9)
        assert sum(r["seconds"][name] for r in records) / 3 == pytest.approx(
            score["seconds_per_image"], rel=1e-9)
    for r in records:
        i = int(r["key"][len("shapes-"):len("shapes-") + 3])
        assert r["prediction"] == second["predicted"][i]
        assert r["label"] == CLASS_NAMES[r["prediction"]]
        with np.load(tmp_path / "api" / r["masks"]["gradient"]) as npz:
            for name in SMALL["methods"]:
                np.testing.assert_array_equal(npz[name], second[name][i])
    md = tables[1]
    # header, one row per method, chance
    assert md.count("\n| ") == 2 + len(SMALL["methods"])
    assert f"| chance (region area) | {result['chance']:.3f} |" in md


def test_demo_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--out", str(tmp_path / "x"), "--method", "nosuch"])
    assert info.value.code == 2 and "unknown 'nosuch'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["demo", "--out", str(tmp_path / "x"), "--images", "0"])
    assert info.value.code == 2
    assert not (tmp_path / "x").exists()
