"""Loaders: one small CNN exported three ways gives the live graph's masks; clear errors.

The CNN (``saliency_tf1.demo.build_cnn``, random weights) is exported as a
frozen graph, a meta-graph checkpoint (with a second, training saver left in
the graph, as training scripts do) and a v1 SavedModel with a signature.
Each export is loaded and explained by every catalogue method; the masks
must equal those of the live graph the exports came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from method_cases import grid_segments, method_args

from saliency_tf1.catalogue import METHODS, available_methods
from saliency_tf1.demo import build_cnn
from saliency_tf1.models import (
    LoadedModel,
    load_checkpoint,
    load_frozen_graph,
    load_model,
    load_saved_model,
)
from saliency_tf1.target import ClassTarget

v1 = tf.compat.v1

SIZE, CLASSES, CLASS = 12, 4, 1
FORMATS = ["frozen", "checkpoint", "saved_model"]


@dataclass
class Exports:
    paths: dict[str, str]
    conv: str  # the conv layer's tensor name
    image: np.ndarray
    batch: np.ndarray
    logits: np.ndarray  # live logits of batch
    masks: dict[str, np.ndarray]  # live masks of image by method


def _args(name: str) -> dict:
    """Cheap arguments; XRAI on a fixed grid of segments (no segmentation run)."""
    if name != "xrai":
        return method_args(name)
    from saliency_tf1.methods.xrai import XRAIParameters

    return {"extra_parameters": XRAIParameters(steps=4, experimental_params={"min_pixel_diff": 0}),
            "segments": grid_segments(SIZE)}


def _explain_all(graph, session, x, logits, conv, image) -> dict[str, np.ndarray]:
    target = ClassTarget(logits)
    masks = {}
    for name in available_methods():
        spec = METHODS[name]
        method = spec.build(graph, session, target.y, x, conv)
        out = getattr(method, spec.call)(image, target.feed(CLASS), **_args(name))
        masks[name] = np.asarray(getattr(out, "attribution_mask", out))
    return masks


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    root = tmp_path_factory.mktemp("exports")
    rng = np.random.default_rng(5)
    batch = rng.random((3, SIZE, SIZE, 3)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(3)
        x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
        net = build_cnn(x, CLASSES, seed=3, widths=(4, 8))
        logits = tf.identity(net["logits"], name="logits")
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        v1.train.Saver(name="training_saver")  # left in the graph, as training scripts do
        ckpt = str(root / "ckpt" / "model")
        v1.train.Saver().save(session, ckpt)
        builder = v1.saved_model.Builder(str(root / "saved_model"))
        signature = v1.saved_model.predict_signature_def({"images": x}, {"logits": logits})
        builder.add_meta_graph_and_variables(
            session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()
        frozen = v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), ["logits"])
        (root / "frozen.pb").write_bytes(frozen.SerializeToString())
        (root / "unfrozen.pb").write_bytes(graph.as_graph_def().SerializeToString())
        live_logits = session.run(logits, {x: batch})
        masks = _explain_all(graph, session, x, logits, net["conv"], batch[0])
    session.close()
    paths = {"frozen": str(root / "frozen.pb"), "checkpoint": ckpt + ".meta",
             "saved_model": str(root / "saved_model"), "unfrozen": str(root / "unfrozen.pb"),
             "root": str(root)}
    return Exports(paths, net["conv"].name, batch[0], batch, live_logits, masks)


def _input_name(fmt: str) -> str:
    return "images" if fmt == "saved_model" else "x"


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_gives_the_live_masks(exports, fmt):
    with load_model(exports.paths[fmt]) as model:
        assert model.kind == fmt
        x = model.tensor(_input_name(fmt), role="input")
        logits = model.tensor("logits", role="output")
        conv = model.tensor(exports.conv, role="conv")
        np.testing.assert_allclose(model.session.run(logits, {x: exports.batch}),
                                   exports.logits, rtol=1e-5, atol=1e-6)
        masks = _explain_all(model.graph, model.session, x, logits, conv, exports.image)
    assert set(masks) == set(exports.masks) == set(available_methods())
    for name, live in exports.masks.items():
        scale = max(1.0, float(np.abs(live).max()))
        np.testing.assert_allclose(masks[name], live, rtol=1e-4, atol=1e-6 * scale,
                                   err_msg=f"{fmt}: {name}")


def test_loaded_inputs_outputs_and_placeholders(exports):
    with load_checkpoint(exports.paths["checkpoint"]) as ckpt:
        # Two savers' filename placeholders are not inputs.
        assert ckpt.placeholders() == ["x"]
        assert list(ckpt.inputs) == ["x"] and ckpt.outputs == {}
        assert ckpt.tensor("x") is ckpt.tensor("x:0") is ckpt.inputs["x"]
        ClassTarget(ckpt.tensor("logits"))  # adds a placeholder of ours: not listed
        assert ckpt.placeholders() == ["x"]
    with load_saved_model(exports.paths["saved_model"]) as saved:
        assert list(saved.inputs) == ["images"] and list(saved.outputs) == ["logits"]
        assert saved.tensor("images", role="input") is saved.graph.get_tensor_by_name("x:0")
        assert saved.tensor("logits") is saved.outputs["logits"]
        assert saved.placeholders() == ["x"]
    with load_saved_model(exports.paths["saved_model"], signature_key=None) as plain:
        assert list(plain.inputs) == ["x"] and plain.outputs == {}
    with load_frozen_graph(exports.paths["frozen"]) as frozen:
        assert list(frozen.inputs) == ["x"] and frozen.placeholders() == ["x"]


def test_context_manager_closes_the_session(exports):
    with load_frozen_graph(exports.paths["frozen"]) as model:
        x = model.tensor("x")
        assert isinstance(model, LoadedModel)
    with pytest.raises(RuntimeError, match="closed Session"):
        model.session.run(x, {x: exports.batch})


def test_wrong_tensor_names_list_the_candidates(exports):
    with load_saved_model(exports.paths["saved_model"]) as model:
        with pytest.raises(ValueError) as err:
            model.tensor("image", role="input")
        text = str(err.value)
        assert "input tensor 'image'" in text and "candidate inputs" in text
        assert "'images' (signature input)" in text and "x:0 float32 [None, 12, 12, 3]" in text
        with pytest.raises(ValueError) as err:
            model.tensor("logit:0", role="output")
        text = str(err.value)
        assert "'logits' (signature output)" in text and "logits:0 float32 [None, 4]" in text
        assert "did you mean: 'logits'" in text
        with pytest.raises(ValueError) as err:
            model.tensor("conv9/Relu", role="conv")
        assert exports.conv in str(err.value) and "candidate conv layers" in str(err.value)
        with pytest.raises(ValueError, match="has no outputs"):
            model.tensor("save/restore_all")
        with pytest.raises(ValueError, match="role: expected"):
            model.tensor("logits", role="label")
        with pytest.raises(ValueError, match="non-empty str"):
            model.tensor("", role="input")


def test_missing_paths_raise_file_not_found(tmp_path, exports):
    missing = str(tmp_path / "nope")
    for load in (load_frozen_graph, load_checkpoint, load_saved_model, load_model):
        with pytest.raises(FileNotFoundError) as err:
            load(missing)
        assert missing in str(err.value)
    # A .meta without its checkpoint.
    meta = tmp_path / "alone.meta"
    meta.write_bytes(Path(exports.paths["checkpoint"]).read_bytes())
    with pytest.raises(FileNotFoundError, match="checkpoint not found") as err:
        load_checkpoint(meta)
    assert str(tmp_path / "alone") in str(err.value)


def test_files_that_are_not_graphs(tmp_path, exports):
    png = tmp_path / "photo.pb"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    text = tmp_path / "notes.pb"
    text.write_text("hello, this is not a graph\n")
    for path in (png, text):
        with pytest.raises(ValueError, match="not a frozen TensorFlow GraphDef"):
            load_frozen_graph(path)
    bad_meta = tmp_path / "model.meta"
    bad_meta.write_bytes(png.read_bytes())
    with pytest.raises(ValueError, match="not a TensorFlow MetaGraphDef"):
        load_checkpoint(bad_meta)
    with pytest.raises(ValueError, match="not a SavedModel directory"):
        load_saved_model(tmp_path)
    with pytest.raises(ValueError, match="not a SavedModel"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="not a frozen graph: it holds .* variable"):
        load_frozen_graph(exports.paths["unfrozen"])
    with pytest.raises(ValueError, match="is a directory"):
        load_frozen_graph(tmp_path)


def test_saved_model_tags_and_signature_errors(exports):
    with pytest.raises(ValueError, match=r"no meta graph with tags \['train'\].*\[\['serve'\]\]"):
        load_saved_model(exports.paths["saved_model"], tags=["train"])
    with pytest.raises(ValueError, match=r"no signature 'predict'.*\['serving_default'\]"):
        load_saved_model(exports.paths["saved_model"], signature_key="predict")


def test_load_model_dispatch(exports):
    pb = os.path.join(exports.paths["saved_model"], "saved_model.pb")
    with load_model(pb) as model:
        assert model.kind == "saved_model"
    with load_model(exports.paths["root"] + "/ckpt/model.meta", checkpoint=os.path.join(
            exports.paths["root"], "ckpt")) as model:
        assert model.kind == "checkpoint"


def test_every_loader_takes_allow_ops_and_checks_it_first(exports):
    for fmt in FORMATS:
        with load_model(exports.paths[fmt], allow_ops=["LookupTableFindV2"]) as model:
            assert model.kind == fmt
        with pytest.raises(ValueError, match="allow_ops: 'Lookup' is not an op type"):
            load_model(exports.paths[fmt], allow_ops=("Lookup",))
    loaders = {"frozen": load_frozen_graph, "checkpoint": load_checkpoint,
               "saved_model": load_saved_model}
    for fmt, load in loaders.items():
        with pytest.raises(TypeError, match="allow_ops: expected a tuple of op type names"):
            load(exports.paths[fmt], allow_ops="LookupTableFindV2")
        with load(exports.paths[fmt], allow_ops=()) as model:
            assert model.kind == fmt
