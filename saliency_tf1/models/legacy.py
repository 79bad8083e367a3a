"""The legacy-Keras switch: running ``tf.compat.v1.layers`` and ``tf_slim`` models on TF >= 2.16.

Since TensorFlow 2.16, ``tf.keras`` is Keras 3, which has no TF1 layers:
``tf.compat.v1.layers.conv2d`` fails with "`conv2d` is not available with
Keras 3". Legacy model code runs when the ``tf-keras`` package (Keras 2) is
installed and the environment variable ``TF_USE_LEGACY_KERAS=1`` is set
*before TensorFlow is imported* (TensorFlow reads it once, at import)::

    from saliency_tf1.legacy import enable_legacy_keras
    enable_legacy_keras()          # first, before anything imports tensorflow
    import tensorflow as tf        # tf.keras / tf.compat.v1.layers are now tf-keras

or from the shell: ``TF_USE_LEGACY_KERAS=1 python my_script.py``. Install the
packages with ``pip install "saliency-tf1[legacy]"`` (tf-keras, tf-slim).

One more repair is needed for ``tf_slim``: TensorFlow's lazy loader for the
TF1 batch-normalisation layer (used by ``slim.batch_norm``, hence by
``tf_slim.nets.resnet_v1`` / ``inception_v3``) still points at
``tf_keras.legacy_tf_layers``, which tf-keras now keeps under
``tf_keras.src.legacy_tf_layers``; building such a net fails with
``ModuleNotFoundError: No module named 'tf_keras.legacy_tf_layers'``.
:func:`register_legacy_tf_layers` (called by :func:`enable_legacy_keras`)
registers the module and its submodules under the old name.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from types import ModuleType

#: The environment variable TensorFlow reads at import to route ``tf.keras`` to tf-keras.
LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"

#: Values of :data:`LEGACY_KERAS_ENV` that TensorFlow takes as "on".
_TRUE = ("1", "true", "True")

#: Where TensorFlow looks for the TF1 layers, and where tf-keras now keeps them.
OLD_LAYERS_MODULE = "tf_keras.legacy_tf_layers"
NEW_LAYERS_MODULE = "tf_keras.src.legacy_tf_layers"

_INSTALL_HINT = 'install it with: pip install "saliency-tf1[legacy]" (tf-keras, tf-slim)'


def legacy_keras_requested() -> bool:
    """Whether :data:`LEGACY_KERAS_ENV` is set to a value TensorFlow takes as on."""
    return os.environ.get(LEGACY_KERAS_ENV) in _TRUE


def tensorflow_uses_legacy_keras() -> bool | None:
    """Whether the imported TensorFlow routes ``tf.keras`` to tf-keras.

    ``None`` if TensorFlow is not imported yet (then :func:`enable_legacy_keras`
    can still switch it on).
    """
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    flag = vars(tf).get("_tf_uses_legacy_keras")  # recorded by tensorflow/__init__.py
    if isinstance(flag, bool):
        return flag
    return legacy_keras_requested()  # other TF versions: best guess from the variable


def enable_legacy_keras() -> None:
    """Switches TensorFlow to tf-keras (Keras 2) so TF1 layers and tf_slim nets build.

    Sets ``TF_USE_LEGACY_KERAS=1``, checks that tf-keras is installed and
    registers its TF1 layers under the module name TensorFlow's loaders expect
    (:func:`register_legacy_tf_layers`). Idempotent. Call it before anything
    imports TensorFlow.

    Raises:
      RuntimeError: TensorFlow was imported before without the variable set;
        it has already routed ``tf.keras`` to Keras 3 and cannot be switched
        in this process. Nothing is changed.
      ImportError: tf-keras is not installed.
    """
    if tensorflow_uses_legacy_keras() is False:
        raise RuntimeError(
            f"TensorFlow was imported before {LEGACY_KERAS_ENV}=1 was set, so tf.keras and "
            "tf.compat.v1.layers are bound to Keras 3 in this process. Call "
            "saliency_tf1.legacy.enable_legacy_keras() before anything imports tensorflow "
            f"(first lines of the script), or start Python with {LEGACY_KERAS_ENV}=1 in the "
            "environment."
        )
    # Look for tf-keras without importing it: importing it imports TensorFlow,
    # which must see the variable first.
    if importlib.util.find_spec("tf_keras") is None:
        raise ImportError(f"legacy Keras: tf-keras is not installed; {_INSTALL_HINT}")
    os.environ[LEGACY_KERAS_ENV] = "1"
    register_legacy_tf_layers()


def register_legacy_tf_layers() -> ModuleType:
    """Makes ``tf_keras.legacy_tf_layers[.*]`` importable: aliases of ``tf_keras.src.*``.

    Returns the module now importable under the old name. A tf-keras that
    still ships the old module is left alone.

    Raises:
      ImportError: tf-keras is not installed, or keeps its TF1 layers in
        neither place.
    """
    try:
        return importlib.import_module(OLD_LAYERS_MODULE)
    except ModuleNotFoundError as err:
        if err.name not in (OLD_LAYERS_MODULE, "tf_keras"):
            raise  # the module exists but something it imports is missing
        if err.name == "tf_keras":
            raise ImportError(f"legacy Keras: tf-keras is not installed; {_INSTALL_HINT}") from err
    try:
        package = importlib.import_module(NEW_LAYERS_MODULE)
    except ModuleNotFoundError as err:
        raise ImportError(
            f"legacy Keras: this tf-keras has neither {OLD_LAYERS_MODULE} nor "
            f"{NEW_LAYERS_MODULE}; use tf-keras 2.16-2.21"
        ) from err
    sys.modules[OLD_LAYERS_MODULE] = package
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{NEW_LAYERS_MODULE}.{info.name}")
        sys.modules[f"{OLD_LAYERS_MODULE}.{info.name}"] = module
    return package
