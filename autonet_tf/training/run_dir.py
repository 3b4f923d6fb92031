"""Run-directory helpers: checked creation and atomic writes."""

from __future__ import annotations

import json
import os
import tempfile

from autonet_tf.errors import UserInputError


def prepare(path: str, flag: str = "model_dir") -> str:
    """Creates ``path`` if needed and checks that it is a writable directory."""
    if not path:
        raise UserInputError(f"--{flag} is empty: expected a directory path")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserInputError(f"--{flag}={path!r} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_probe"):
            pass
    except OSError as e:
        raise UserInputError(f"--{flag}={path!r} is not writable ({e.strerror})") from None
    return path


def check_writable_parent(path: str, flag: str = "model_dir") -> None:
    """Fails early (creating nothing) when ``path`` could not be created or written."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise UserInputError(f"--{flag}={path!r}: {probe!r} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserInputError(f"--{flag}={path!r} is not writable (no write access to {probe!r})")


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (temp file in the same folder + rename)."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
