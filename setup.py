"""Packaging for saliency_tf1."""

from pathlib import Path

from setuptools import find_packages, setup

# TensorFlow 2.13 to 2.21 (legacy pipelines are pinned to old releases; `make
# test-oldest` runs the core of the suite on 2.13 with NumPy < 2, as CI does).
# TensorFlow: the plain `tensorflow` wheel. On Linux it runs on the CPU unless
# installed with its `and-cuda` extra, so it is the CPU build for CI. We do not
# name `tensorflow-cpu`: tf-keras and tf-slim (the `legacy` extra) require the
# distribution called `tensorflow` and would install a second copy over it.
TENSORFLOW = "tensorflow>=2.13,<2.22"

EXTRAS = {
    # XRAI's Felzenszwalb segmentation.
    "xrai": ["scikit-image>=0.21"],
    # Legacy model code: tf.compat.v1.layers needs tf-keras on TF >= 2.16.
    "legacy": ["tf-keras>=2.16,<2.22", "tf-slim>=1.1"],
    # Image files for the command line.
    "cli": ["pillow>=9"],
    "notebooks": ["nbclient>=0.8", "nbformat>=5.7", "ipykernel>=6"],
    # PIC curves (SIC/AIC): Delaunay reveal and the WebP information estimate.
    "metrics": ["scipy>=1.8", "pillow>=9"],
    # Test and bench only: PAIR's saliency 0.2.1 is the oracle for "same
    # numbers as PAIR"; it is never imported by the library.
    "oracle": ["saliency==0.2.1"],
    # Runs over data sets on Apache Beam (saliency_tf1.beam, explain --runner).
    # Beam 2.77 takes protobuf < 7 and Pillow < 13, both within TensorFlow's and ours.
    "beam": ["apache-beam>=2.77,<3", "pillow>=9"],
}
EXTRAS["dev"] = sorted(
    {req for name in EXTRAS for req in EXTRAS[name]}
    # selenium: the report's browser test drives the system's Chromium (chromedriver
    # from the OS packages; .ci/run installs them).
    | {"pytest>=7", "pytest-timeout>=2", "ruff>=0.5", "selenium>=4.20"}
)

setup(
    name="saliency_tf1",
    version="0.1.0",
    description="Fast, batched saliency methods for TensorFlow models in TF1 graph style.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    # The repository's top-level compat/ folder installs as saliency_tf1.compat:
    # nothing goes into site-packages under a generic top-level name.
    packages=find_packages(include=["saliency_tf1", "saliency_tf1.*"]) + ["saliency_tf1.compat"],
    package_dir={"saliency_tf1.compat": "compat"},
    python_requires=">=3.10",
    install_requires=[TENSORFLOW, "numpy>=1.24", "matplotlib>=3.5", "tqdm>=4.60"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["saliency-tf1=saliency_tf1.cli:main"]},
    license="Apache-2.0",
)
