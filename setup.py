"""Installs the autonet_tf package and its programs (autonet-search, -train, -evaluate,
-tune, -visualize; bin/*.py run the same programs from a checkout)."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def _requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.startswith("#")
            and not l.startswith("pytest")]


setup(
    name="autonet_tf",
    version="0.1.0",
    description="Neural architecture search (DARTS) and hyperparameter search for Keras 3 on TensorFlow",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["autonet_tf", "autonet_tf.*"]),
    package_data={"autonet_tf.tuning": ["spaces/*.yaml"]},
    python_requires=">=3.10",
    install_requires=_requirements(),
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5"], "gpu": ["tensorflow[and-cuda]==2.21.*"]},
    entry_points={"console_scripts": [
        f"autonet-{name}=autonet_tf.programs.{name}:run"
        for name in ("search", "train", "evaluate", "tune", "visualize")]},
)
