"""Finding an autonet_tf export and reading its metadata, without TensorFlow.

``bin/evaluate.py`` checks ``--saved_model`` with these before TensorFlow
starts, so a wrong path is answered at once.
"""

from __future__ import annotations

import json
import os

from autonet_tf.errors import UserInputError
from autonet_tf.io import run_dir

#: the metadata file every autonet_tf export holds, inside the SavedModel
MARKER = os.path.join("assets.extra", "autonet_tf.json")
#: export formats: an image classifier (CNN), a language model (RNN)
IMAGE_CLASSIFIER = "autonet_tf/image_classifier/1"
LANGUAGE_MODEL = "autonet_tf/language_model/1"


def find_saved_model(path: str) -> str:
    """``path``, or ``path/saved_model`` when ``path`` is an export folder holding one."""
    if (not run_dir.exists(os.path.join(path, "saved_model.pb"))
            and run_dir.exists(os.path.join(path, "saved_model", "saved_model.pb"))):
        return os.path.join(path, "saved_model")
    return path


def read_metadata(saved_model_dir: str, formats: tuple[str, ...] = (IMAGE_CLASSIFIER,)) -> dict:
    """The metadata of an autonet_tf export of one of ``formats``; UserInputError otherwise."""
    flag = f"--saved_model={saved_model_dir!r}"
    if not run_dir.isdir(saved_model_dir):
        raise UserInputError(f"{flag} does not exist or is not a directory")
    if not run_dir.exists(os.path.join(saved_model_dir, "saved_model.pb")):
        inner = find_saved_model(saved_model_dir)
        hint = f"; did you mean {inner!r}?" if inner != saved_model_dir else ""
        raise UserInputError(f"{flag} is not a SavedModel (no saved_model.pb){hint}")
    path = os.path.join(saved_model_dir, MARKER)
    try:
        meta = run_dir.read_json(path)
    except (OSError, json.JSONDecodeError):
        raise UserInputError(f"{flag} is a SavedModel but not an autonet_tf export "
                             f"(no readable {MARKER})") from None
    if not isinstance(meta, dict) or meta.get("format") not in formats:
        raise UserInputError(f"{flag}: {MARKER} has format "
                             f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                             f"expected {' or '.join(repr(f) for f in formats)}")
    return meta
