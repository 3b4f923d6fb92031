"""Run-directory helpers: checked creation and atomic writes, on any filesystem.

Paths go through ``tf.io.gfile``, so a run directory may be local or on any
filesystem TensorFlow reads and writes (``gs://bucket/run``, ``s3://``,
``hdfs://``, the in-process ``ram://``). Local paths keep the stricter
checks (permissions, existing non-directories) and atomic writes by a
temporary file in the same folder and a rename; on other filesystems a
write goes to a temporary object and is renamed over the target where the
filesystem can (object stores copy it, which is atomic per object).
TensorFlow is imported for ``scheme://`` paths only, so the programs check
local paths before TensorFlow starts.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid

from autonet_tf.errors import UserInputError


def is_remote(path: str) -> bool:
    """Whether ``path`` names a non-local filesystem (``scheme://...``)."""
    return "://" in str(path) and not str(path).startswith("file://")


def _through_tensorflow(path: str) -> bool:
    """Whether ``path`` names a TensorFlow filesystem (``scheme://``, ``file://`` included)."""
    return "://" in str(path)


def _tf():
    import tensorflow as tf

    return tf


def exists(path: str) -> bool:
    """Whether ``path`` exists; False also where it names nothing TensorFlow can
    check (an unknown ``scheme://``, a bucket-less ``gs://``), as :func:`isdir`."""
    if not _through_tensorflow(path):
        return os.path.exists(path)
    tf = _tf()
    try:
        return tf.io.gfile.exists(path)
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        return False


def isdir(path: str) -> bool:
    return _tf().io.gfile.isdir(path) if _through_tensorflow(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
    if _through_tensorflow(path):
        _tf().io.gfile.makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def prepare(path: str, flag: str = "model_dir") -> str:
    """Creates ``path`` if needed and checks that it is a writable directory."""
    if not path:
        raise UserInputError(f"--{flag} is empty: expected a directory path")
    if is_remote(path):
        tf = _tf()
        try:
            tf.io.gfile.makedirs(path)
            probe = os.path.join(path, f".write_probe_{uuid.uuid4().hex}")
            with tf.io.gfile.GFile(probe, "w") as f:
                f.write("")
            tf.io.gfile.remove(probe)
        except (tf.errors.OpError, OSError) as e:
            raise UserInputError(f"--{flag}={path!r} is not writable "
                                 f"({_first_line(e)})") from None
        return path
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
    """Fails early (creating nothing) when ``path`` could not be created or written.

    Remote paths are checked when :func:`prepare` creates them (an object
    store has no parent folders to check).
    """
    if is_remote(path):
        return
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


def write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temporary file + rename)."""
    if is_remote(path):
        tf = _tf()
        folder = os.path.dirname(path)
        if folder:
            tf.io.gfile.makedirs(folder)
        tmp = os.path.join(folder, f".tmp_{uuid.uuid4().hex}_{os.path.basename(path)}")
        try:
            with tf.io.gfile.GFile(tmp, "wb") as f:
                f.write(data)
            tf.io.gfile.rename(tmp, path, overwrite=True)
        except BaseException:
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
            raise
        return
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _first_line(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def write_json(path: str, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_text(path: str) -> str:
    """The text of ``path``; OSError when it cannot be read (any filesystem)."""
    if not _through_tensorflow(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    tf = _tf()
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return f.read()
    except tf.errors.OpError as e:
        raise OSError(f"{path}: {_first_line(e)}") from None


def read_json(path: str):
    return json.loads(read_text(path))
