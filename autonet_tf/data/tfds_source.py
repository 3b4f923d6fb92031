"""tfds datasets: prepared (downloaded when missing), read whole or streamed.

:func:`prepared_builder` makes sure a tfds dataset is prepared in
``--data_dir`` (tfds' default directory when unset): a dataset not prepared
there is downloaded and prepared by tfds with its own progress output,
unless downloading is off (``--nodownload``). Without network this fails
within seconds (the download host is probed first; tfds alone retries for
minutes). ``imagenet2012`` cannot be downloaded: tfds prepares it from the
ILSVRC2012 tar files placed in ``<data_dir>/downloads/manual``.

A prepared split is read either into NumPy (:func:`read_split`, small
datasets) or as a :class:`TfdsSplit`, whose records stay encoded until the
input pipeline decodes them (:mod:`autonet_tf.data.pipeline`).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from autonet_tf import progress
from autonet_tf.errors import UserInputError

# The splits read as (train, test): ImageNet's labelled held-out split is
# 'validation'.
SPLITS = {"imagenet2012": ("train", "validation")}
MANUAL = ("imagenet2012",)  # prepared from files the user downloads by hand

# Where tfds downloads each dataset from (its builders' URLs).
DOWNLOAD_HOSTS = {"cifar10": "www.cs.toronto.edu", "cifar100": "www.cs.toronto.edu",
                  "mnist": "storage.googleapis.com",
                  "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
                  "svhn_cropped": "ufldl.stanford.edu"}
NETWORK_CHECK_S = 10.0  # longest wait for the download host before giving up


def reachable(host: str, port: int = 443, timeout: float = NETWORK_CHECK_S) -> str | None:
    """None when ``host:port`` accepts a connection within ``timeout`` s, else why not.

    Name resolution can hang longer than any socket timeout, so the attempt
    runs in a daemon thread that is abandoned at the deadline.
    """
    import socket
    import threading

    outcome = ["no answer within %g s" % timeout]

    def attempt():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome[0] = None
        except OSError as e:
            outcome[0] = str(e) or type(e).__name__

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0]


def splits_of(name: str) -> tuple[str, str]:
    return SPLITS.get(name, ("train", "test"))


def prepared_builder(name: str, data_dir: str | None, download: bool = True):
    """The tfds builder of ``name``, prepared in ``data_dir`` (downloaded if allowed)."""
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    root = data_dir or os.path.expanduser(os.path.join("~", "tensorflow_datasets"))
    manual = os.path.join(root, "downloads", "manual")
    if name in MANUAL:
        hint = (f"put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from "
                f"image-net.org) in {manual} and rerun (tfds prepares it once, hours), or "
                f"pass a folder of class sub-folders as --dataset")
    else:
        hint = (f"prepare it on a machine with network access (`tfds build {name} "
                f"--data_dir=DIR`), copy DIR here and pass --data_dir=DIR")
    if not download and data_dir is not None and not tf.io.gfile.isdir(data_dir):
        raise UserInputError(f"--data_dir={data_dir!r} does not exist; {hint}")
    where = data_dir or "the default tfds directory (~/tensorflow_datasets)"
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # tfds warns about what it lacks
    try:
        tfds.load(name, split=list(splits_of(name)), data_dir=data_dir, download=False)
    except AssertionError:
        if not download:
            raise UserInputError(f"--dataset={name}: not prepared in {where} (--nodownload); "
                                 f"{hint}") from None
        if name in MANUAL and not (tf.io.gfile.isdir(manual) and tf.io.gfile.listdir(manual)):
            raise UserInputError(f"--dataset={name}: not prepared in {where}, and its "
                                 f"files are not in {manual}; {hint}") from None
        if name not in MANUAL:
            host = DOWNLOAD_HOSTS.get(name, "storage.googleapis.com")
            problem = reachable(host)
            if problem:
                raise UserInputError(
                    f"--dataset={name}: not prepared in {where}, and downloading it failed "
                    f"(cannot reach {host}: {problem}); {hint}") from None
        absl_logging.set_verbosity(verbosity)
        progress.say(f"{'Preparing' if name in MANUAL else 'Downloading and preparing'} "
                     f"{name} into {where} (once) ...")
        try:
            tfds.load(name, split=list(splits_of(name)), data_dir=data_dir, download=True)
        except AssertionError as e:  # imagenet2012 without its manual files
            raise UserInputError(f"--dataset={name}: cannot prepare it in {where} "
                                 f"({str(e).splitlines()[0][:200]}); {hint}") from None
    finally:
        absl_logging.set_verbosity(verbosity)
    return tfds.builder(name, data_dir=data_dir)


def class_names(builder) -> list[str]:
    label = builder.info.features["label"]
    if getattr(label, "names", None):
        return list(label.names)
    return [str(i) for i in range(label.num_classes)]


def image_feature_shape(builder) -> tuple:
    """The image feature's (H, W, C); None for a size that varies (ImageNet)."""
    return tuple(builder.info.features["image"].shape)


def read_split(builder, split: str, name: str):
    """(uint8 images, labels) of a whole split, in memory."""
    import tensorflow_datasets as tfds

    images, labels = [], []
    ds = builder.as_dataset(split=split, shuffle_files=False, as_supervised=True)
    for x, y in tfds.as_numpy(ds.batch(4096)):
        images.append(x)
        labels.append(y)
    if not images:
        raise UserInputError(f"--dataset={name}: the {split!r} split is empty")
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels)


class TfdsSplit:
    """A prepared tfds split read record by record, or a subset of its records.

    The records keep their encoded images (PNG/JPEG bytes) and carry their
    labels; the input pipeline shuffles, skips and shards them before
    decoding. ``split[indices]`` is the subset of those positions (in file
    order), so a search can divide the training split by index as it does
    arrays. Used as both the images and the labels of a streamed
    :class:`~autonet_tf.data.images.ImageDataset`.
    """

    def __init__(self, builder, split: str, count: int | None = None,
                 keep: np.ndarray | None = None):
        self.builder = builder
        self.split = split
        if count is None:
            count = self._count()
        self.count = count
        self.keep = np.arange(count) if keep is None else np.asarray(keep, np.int64)
        self._labels = None

    def _count(self) -> int:
        splits = self.builder.info.splits
        if self.split in splits:
            return int(splits[self.split].num_examples)
        return int(self._read().cardinality())  # tfds' mock data has no split info

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, indices) -> "TfdsSplit":
        return TfdsSplit(self.builder, self.split, self.count,
                         np.sort(self.keep[np.asarray(indices)]))

    def _read(self) -> tf.data.Dataset:
        import tensorflow_datasets as tfds

        return self.builder.as_dataset(
            split=self.split, shuffle_files=False, as_supervised=True,
            decoders={"image": tfds.decode.SkipDecoding()})

    def records(self) -> tf.data.Dataset:
        """(encoded image, int32 label) of the kept records, in file order."""
        ds = self._read().map(lambda image, label: (image, tf.cast(label, tf.int32)))
        if len(self.keep) == self.count:
            return ds
        mask = np.zeros(self.count, bool)
        mask[self.keep] = True
        kept = tf.constant(mask)
        return ds.enumerate().filter(lambda i, _: kept[i]).map(lambda _, record: record)

    def labels(self) -> np.ndarray:
        """The kept records' labels, in file order (read once)."""
        if self._labels is None:
            chunks = [y.numpy() for _, y in self.records().batch(8192)]
            self._labels = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
        return self._labels

    def image_chunks(self, shape, size: int, start: int = 0, stop: int | None = None):
        """uint8 images ``[start:stop]`` of the kept records, decoded to ``shape``,
        as consecutive arrays of up to ``size`` images (one pass over the records)."""
        from autonet_tf.data.pipeline import decode_bytes

        stop = len(self) if stop is None else min(stop, len(self))
        ds = self.records().skip(start).take(max(stop - start, 0)).map(
            lambda image, _: decode_bytes(image, shape), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True).batch(size)
        for batch in ds:
            yield batch.numpy()

    def images(self, shape, start: int = 0, stop: int | None = None) -> np.ndarray:
        """uint8 images ``[start:stop]`` of the kept records, decoded to ``shape``."""
        parts = list(self.image_chunks(shape, 256, start, stop))
        return np.concatenate(parts) if parts else np.zeros((0,) + tuple(shape), np.uint8)
