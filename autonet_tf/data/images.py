"""Image classification datasets: embedded, tfds, MedMNIST-style npz, image folders.

Every source is read into an :class:`ImageDataset`: uint8 NHWC arrays in
[0, 255] for a train and a test split (or, streamed, file paths or tfds
records), integer labels, class names and the per-channel mean/std used for
normalisation. ``tf.data`` pipelines are built
from it by :mod:`autonet_tf.data.pipeline`.

Sources (``DataConfig.dataset``):

* ``digits`` (default, embedded): scikit-learn's 8x8 handwritten digits,
  1,797 images, 10 classes; works offline.
* a tfds name: cifar10, cifar100, mnist, fashion_mnist, svhn_cropped,
  imagenet2012, read from ``--data_dir`` (tfds' default directory when
  unset); see :mod:`autonet_tf.data.tfds_source` for downloading and
  preparing. Splits of more than 1 GiB of decoded images (ImageNet), or any
  with ``--stream=on``, are streamed: the records stay encoded until the
  input pipeline decodes them.
* a path to an ``.npz`` file in the MedMNIST layout (train_images,
  train_labels, val_images, val_labels, test_images, test_labels).
* a folder with one sub-folder of images per class.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

from autonet_tf.configs import DataConfig
from autonet_tf.errors import UserInputError
from autonet_tf.io import run_dir

TFDS_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped",
                 "imagenet2012")

# Published normalisation constants (reference utils._data_transforms_cifar10
# and the usual CIFAR-100 figures); other datasets use train-split statistics.
KNOWN_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
NATURAL_IMAGES = ("cifar10", "cifar100", "imagenet2012")
IMAGENET_SIZE = 224  # streamed images of varying size without --image_size
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclasses.dataclass
class ImageDataset:
    """Train and test images (uint8 NHWC) with labels and metadata."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    natural: bool = False  # flips and crops are label-preserving
    # Streamed sources: x_train/x_test hold file paths, or are tfds records
    # (a TfdsSplit, then also y_train/y_test: the records carry the labels),
    # and this is the shape every image is decoded to (None: in memory).
    shape: tuple[int, int, int] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if self.shape is not None:
            return tuple(int(d) for d in self.shape)
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def streamed(self) -> bool:
        """Whether the images are read from their files batch by batch."""
        return self.shape is not None

    def test_images(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """uint8 test images ``[start:stop]`` (decoded from files or records when streamed)."""
        from autonet_tf.data.pipeline import is_records

        if not self.streamed:
            return self.x_test[start:stop]
        if is_records(self.x_test):
            return self.x_test.images(self.shape, start, stop)
        return read_files(self.x_test[start:stop], self.shape)

    def test_chunks(self, size: int):
        """The test split as consecutive uint8 image arrays of up to ``size``,
        decoded one chunk at a time when streamed (a record source in one pass)."""
        from autonet_tf.data.pipeline import is_records

        if is_records(self.x_test):
            yield from self.x_test.image_chunks(self.shape, size)
            return
        for start in range(0, len(self.x_test), size):
            yield self.test_images(start, start + size)

    def test_labels(self) -> np.ndarray:
        """The test split's labels (read from the records of a streamed tfds split)."""
        from autonet_tf.data.pipeline import is_records

        return self.y_test.labels() if is_records(self.y_test) else self.y_test

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def check_source(name: str) -> None:
    """The checks of :func:`load` that read no data: ``name`` is a known
    dataset, an existing .npz file or a folder. UserInputError otherwise.

    Local paths are checked without TensorFlow (the programs call this
    before it starts)."""
    if name == "digits" or name in TFDS_DATASETS:
        return
    if name.endswith(".npz"):
        if not run_dir.exists(name) or run_dir.isdir(name):
            raise UserInputError(f"--dataset={name!r}: no such .npz file")
    elif not run_dir.isdir(name):
        raise UserInputError(
            f"--dataset={name!r} is not a known dataset: expected 'digits', one of "
            f"{', '.join(TFDS_DATASETS)}, an .npz file or a folder of class sub-folders")


def load(config: DataConfig, seed: int = 0) -> ImageDataset:
    """Reads the dataset named by ``config.dataset``; raises UserInputError on bad input."""
    name = config.dataset
    check_source(name)
    if name == "digits":
        dataset = _digits(config.test_fraction, seed)
    elif name in TFDS_DATASETS:
        dataset = _tfds(name, config.data_dir, config.download, config.stream,
                        config.image_size)
    elif name.endswith(".npz"):
        dataset = _npz(name)
    else:
        dataset = _folder(name, config.image_size, config.test_fraction, seed, config.stream)
    _check_arrays(dataset, name)
    return dataset


def _stats(name: str, x: np.ndarray):
    if name in KNOWN_STATS:
        return KNOWN_STATS[name]
    pixels = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    mean = pixels.mean(axis=0)
    std = np.maximum(pixels.std(axis=0), 1e-3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _tfds(name: str, data_dir: str | None, download: bool, stream: str,
          image_size: int | None) -> ImageDataset:
    """A prepared tfds dataset, in memory or streamed (``stream``: auto, on, off)."""
    from autonet_tf.data import tfds_source

    builder = tfds_source.prepared_builder(name, data_dir, download)
    train_split, test_split = tfds_source.splits_of(name)
    names = tfds_source.class_names(builder)
    shape = tfds_source.image_feature_shape(builder)
    train = tfds_source.TfdsSplit(builder, train_split)
    if stream == "auto":
        known = None not in shape
        stream = "off" if known and len(train) * int(np.prod(shape)) <= STREAM_ABOVE_BYTES \
            else "on"
    if stream == "off":
        (x_train, y_train), (x_test, y_test) = (
            tfds_source.read_split(builder, s, name) for s in (train_split, test_split))
        return _finish(name, x_train, y_train, x_test, y_test, names,
                       natural=name in NATURAL_IMAGES)
    test = tfds_source.TfdsSplit(builder, test_split)
    for split in (train, test):
        if len(split) == 0:
            raise UserInputError(f"--dataset={name}: the {split.split!r} split is empty")
    if None in shape or image_size:
        side = image_size or IMAGENET_SIZE
        shape = (side, side, shape[-1] or 3)
    if name in KNOWN_STATS:
        mean, std = KNOWN_STATS[name]
    else:
        mean, std = _stats(name, train.images(shape, 0, STATS_SAMPLE))
    return ImageDataset(name, train, train, test, test, names, mean, std,
                        natural=name in NATURAL_IMAGES, shape=tuple(int(d) for d in shape))


def _split(x, y, test_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(len(x) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _finish(name, x_train, y_train, x_test, y_test, class_names, natural=False):
    mean, std = _stats(name, x_train)
    return ImageDataset(name, x_train, y_train.astype(np.int32), x_test,
                        y_test.astype(np.int32), list(class_names), mean, std, natural)


def _digits(test_fraction: float, seed: int) -> ImageDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; scale to 0..255 so every dataset shares one range.
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = digits.target
    return _finish("digits", *_split(x, y, test_fraction, seed),
                   [str(c) for c in digits.target_names])


NPZ_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images",
            "test_labels")


def _npz(path: str) -> ImageDataset:
    """A MedMNIST-layout .npz, local or on any TensorFlow filesystem (gs://...)."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            missing = [k for k in ("train_images", "train_labels", "test_images",
                                   "test_labels") if k not in data.files]
            if missing:
                raise UserInputError(
                    f"--dataset={path!r}: npz is missing key(s) {missing}; expected the "
                    f"MedMNIST layout {list(NPZ_KEYS)}")
            arrays = {k: data[k] for k in NPZ_KEYS if k in data.files}
    except UserInputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, tf.errors.OpError) as e:
        raise UserInputError(f"--dataset={path!r}: not a readable .npz file ({e})") from None
    x_train, y_train = _npz_split(arrays, "train", path)
    x_test, y_test = _npz_split(arrays, "test", path)
    if "val_images" in arrays and "val_labels" in arrays:
        # The search splits train by --train_portion; the official val split
        # joins the training data so no labelled image is left unused.
        x_val, y_val = _npz_split(arrays, "val", path)
        x_train, y_train = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
    if x_test.shape[1:] != x_train.shape[1:]:
        raise UserInputError(f"--dataset={path!r}: test images are {x_test.shape[1:]}, "
                             f"train images {x_train.shape[1:]}")
    unseen = int(np.count_nonzero(y_test > y_train.max()))
    if unseen:
        raise UserInputError(
            f"--dataset={path!r}: {unseen} test label(s) are above the largest training "
            f"label {int(y_train.max())} (test labels go up to {int(y_test.max())}); the "
            f"network could never predict them")
    num_classes = int(y_train.max()) + 1
    name = os.path.splitext(os.path.basename(path))[0]
    return _finish(name, x_train, y_train, x_test, y_test,
                   [str(i) for i in range(num_classes)])


def _npz_split(arrays, split, path):
    x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise UserInputError(f"--dataset={path!r}: {split}_images has shape {x.shape}; "
                             f"expected (N, H, W) or (N, H, W, 1|3)")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.inexact) and not np.isfinite(x).all():
            bad = int(np.count_nonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1)))
            raise UserInputError(f"--dataset={path!r}: {split}_images has NaN or infinite "
                                 f"values in {bad} image(s); expected numbers in [0, 255]")
        if not np.issubdtype(x.dtype, np.number) or x.size and (x.min() < 0 or x.max() > 255):
            raise UserInputError(f"--dataset={path!r}: {split}_images must be uint8 or "
                                 f"numbers in [0, 255], got dtype {x.dtype}")
        x = np.round(x).astype(np.uint8)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise UserInputError(f"--dataset={path!r}: {split}_labels has shape {y.shape} and "
                             f"dtype {y.dtype}; expected {len(x)} integer labels")
    if len(y) and y.min() < 0:
        raise UserInputError(f"--dataset={path!r}: {split}_labels has negative labels")
    return x, y


# An image folder whose decoded images would take more than this is streamed
# with DataConfig.stream='auto'.
STREAM_ABOVE_BYTES = 1 << 30
STATS_SAMPLE = 256  # images decoded for a streamed folder's mean/std


def read_files(paths, shape) -> np.ndarray:
    """uint8 images decoded from ``paths`` to ``shape`` (in parallel, in order)."""
    import tensorflow as tf

    from autonet_tf.data.pipeline import decode_file

    if len(paths) == 0:
        return np.zeros((0,) + tuple(shape), np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(paths)).map(
        lambda p: decode_file(p, shape), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True).batch(256)
    return np.concatenate([b.numpy() for b in ds])


def _folder_files(path: str):
    """(class names, [file path], [label]) of a class-folder tree (any TF filesystem)."""
    import tensorflow as tf

    def listdir(d):
        return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(d))

    classes = [d for d in listdir(path) if not d.startswith(".")
               and tf.io.gfile.isdir(os.path.join(path, d))]
    if len(classes) < 2:
        raise UserInputError(f"--dataset={path!r}: expected at least 2 class sub-folders, "
                             f"found {len(classes)}")
    files, labels = [], []
    for label, cls in enumerate(classes):
        names = [f for f in listdir(os.path.join(path, cls))
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not names:
            raise UserInputError(f"--dataset={path!r}: class folder {cls!r} has no images "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
        files += [os.path.join(path, cls, f) for f in names]
        labels += [label] * len(names)
    return classes, files, labels


def _read_image(path: str, file: str, image_size: int | None = None):
    """One image file as a PIL image in mode L or RGB (any TF filesystem), or one error line."""
    import tensorflow as tf
    from PIL import Image, UnidentifiedImageError

    try:
        with tf.io.gfile.GFile(file, "rb") as f, Image.open(f) as im:
            im = im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()
    except (UnidentifiedImageError, OSError, tf.errors.OpError) as e:
        raise UserInputError(f"--dataset={path!r}: cannot read image {file!r} ({e})") from None
    return im.resize((image_size, image_size)) if image_size else im


def _open_image(path: str, file: str):
    """(height, width, channels) of one image as the folder readers see it."""
    im = _read_image(path, file)
    return im.size[1], im.size[0], 1 if im.mode == "L" else 3


def _folder(path: str, image_size: int | None, test_fraction: float, seed: int,
            stream: str = "auto") -> ImageDataset:
    classes, files, labels = _folder_files(path)
    h, w, channels = _open_image(path, files[0])
    if image_size:
        h = w = image_size
    if stream == "auto":
        stream = "on" if len(files) * h * w * 3 > STREAM_ABOVE_BYTES else "off"
    if stream == "on":
        return _streamed_folder(path, classes, files, labels, (h, w), test_fraction, seed)
    return _folder_in_memory(path, classes, files, labels, image_size, test_fraction, seed)


def _streamed_folder(path, classes, files, labels, size, test_fraction, seed) -> ImageDataset:
    """File paths instead of images; the pipeline decodes them batch by batch.

    Every image is resized to ``size`` (--image_size, else the first image's
    size); the channel count is the first few images' (3 if any is colour).
    Mean and std come from a fixed sample of STATS_SAMPLE training images.
    """
    x = np.asarray(files)
    y = np.asarray(labels)
    sample_index = np.random.default_rng(seed).permutation(len(x))[:8]
    channels = max(_open_image(path, x[i])[2] for i in sample_index)
    shape = (size[0], size[1], channels)
    x_train, y_train, x_test, y_test = _split(x, y, test_fraction, seed)
    sample = read_files(x_train[np.random.default_rng(seed).permutation(
        len(x_train))[:STATS_SAMPLE]], shape)
    name = os.path.basename(os.path.normpath(path))
    mean, std = _stats(name, sample)
    return ImageDataset(name, x_train, y_train.astype(np.int32), x_test,
                        y_test.astype(np.int32), list(classes), mean, std, natural=True,
                        shape=shape)


def _folder_in_memory(path, classes, files, labels, image_size, test_fraction,
                      seed) -> ImageDataset:
    images, shape = [], None
    for file in files:
        array = np.asarray(_read_image(path, file, image_size), dtype=np.uint8)
        if array.ndim == 2:
            array = array[..., None]
        if shape is None:
            shape = array.shape[:2]
        elif array.shape[:2] != shape:
            raise UserInputError(
                f"--dataset={path!r}: image {file!r} is {array.shape[1]}x{array.shape[0]} "
                f"but earlier images are {shape[1]}x{shape[0]}; pass --image_size to resize")
        images.append(array)
    channels = max(a.shape[-1] for a in images)  # greyscale joins RGB as RGB
    images = [np.repeat(a, channels, axis=-1) if a.shape[-1] != channels else a for a in images]
    x, y = np.stack(images), np.asarray(labels)
    name = os.path.basename(os.path.normpath(path))
    return _finish(name, *_split(x, y, test_fraction, seed), classes, natural=True)


def _check_arrays(ds: ImageDataset, spec: str) -> None:
    if len(ds.x_train) < 2 or len(ds.x_test) < 1:
        raise UserInputError(f"--dataset={spec!r}: too few images ({len(ds.x_train)} train, "
                             f"{len(ds.x_test)} test)")
    if ds.num_classes < 2:
        raise UserInputError(f"--dataset={spec!r}: needs at least 2 classes")
    h, w, _ = ds.input_shape
    if h < 4 or w < 4:
        raise UserInputError(f"--dataset={spec!r}: images are {h}x{w}; need at least 4x4")
