"""``tf.data`` pipelines over an :class:`~autonet_tf.data.images.ImageDataset`.

Batches are deterministic functions of (seed, epoch): the shuffle order and
every random crop/flip are seeded by them, so a run resumed mid-epoch skips
the batches it already trained on and then sees exactly what an unbroken run
would have seen.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def normalize(images, mean, std):
    """uint8/float images in [0, 255] -> float32 standardised per channel."""
    x = tf.cast(images, tf.float32) / 255.0
    return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def augment_image(image, seed, pad: int, flip: bool):
    """Random crop with zero padding ``pad`` and optional horizontal flip (stateless)."""
    h, w = image.shape[0], image.shape[1]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if pad:
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(padded, tf.shape(image), seeds[0])
        image.set_shape((h, w, padded.shape[-1]))
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    return image


def cutout(image, seed, length: int):
    """Zeroes one ``length`` x ``length`` square centred at a random pixel (clipped)."""
    h, w = image.shape[0], image.shape[1]
    centre = tf.stack([tf.random.stateless_uniform([], seed, 0, h, dtype=tf.int32),
                       tf.random.stateless_uniform([], seed + 1, 0, w, dtype=tf.int32)])
    rows = tf.range(h)[:, None]
    cols = tf.range(w)[None, :]
    half = length // 2
    inside = ((rows >= centre[0] - half) & (rows < centre[0] - half + length)
              & (cols >= centre[1] - half) & (cols < centre[1] - half + length))
    return image * tf.cast(~inside, image.dtype)[..., None]


def is_records(x) -> bool:
    """Whether ``x`` is a record source (a streamed tfds split, ``records()``)."""
    return hasattr(x, "records")


def is_streamed(x) -> bool:
    """Whether ``x`` holds image file paths (a streamed folder) or records, not images."""
    return is_records(x) or np.asarray(x).dtype.kind in "USO"


def decode_file(path, shape, channels: int | None = None):
    """One image file (PNG, JPEG, BMP, GIF; any TensorFlow filesystem) -> uint8 HxWxC.

    Resized to ``shape[:2]`` (bilinear) unless ``shape`` is None; the channel
    count is ``shape[2]`` (greyscale and RGB files convert).
    """
    return decode_bytes(tf.io.read_file(path), shape, channels)


def decode_bytes(data, shape, channels: int | None = None):
    """One encoded image (the bytes of a file or of a tfds record) -> uint8 HxWxC,
    resized as :func:`decode_file` says."""
    channels = channels if channels is not None else (shape[2] if shape else 0)
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    if shape is not None:
        image = tf.image.resize(image, shape[:2], antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        image.set_shape(tuple(shape))
    return image


# train_imagenet.py: RandomResizedCrop(224), flip, ColorJitter(0.4, 0.4, 0.4, 0.2);
# evaluation: Resize(256) then CenterCrop(224).
IMAGENET_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.2}
IMAGENET_EVAL_RESIZE = 256 / 224


def random_resized_crop(image, seed, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """A random crop of ``scale`` of the area and ``ratio`` aspect, resized to ``size``."""
    shape = tf.shape(image)
    box_begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=ratio, area_range=scale,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, box_begin, box_size)
    return tf.image.resize(crop, size[:2], antialias=True)


def color_jitter(image, seed):
    """Brightness, contrast, saturation (factors in [1 - 0.4, 1 + 0.4]) and hue (+-0.2)
    of a float image in [0, 255], in that order, stateless."""
    j = IMAGENET_JITTER
    seeds = tf.random.experimental.stateless_split(seed, 4)
    x = image / 255.0
    x = x * tf.random.stateless_uniform([], seeds[0], 1 - j["brightness"], 1 + j["brightness"])
    x = tf.image.stateless_random_contrast(x, 1 - j["contrast"], 1 + j["contrast"], seeds[1])
    if image.shape[-1] == 3:
        x = tf.image.stateless_random_saturation(tf.clip_by_value(x, 0, 1),
                                                 1 - j["saturation"], 1 + j["saturation"],
                                                 seeds[2])
        x = tf.image.stateless_random_hue(tf.clip_by_value(x, 0, 1), j["hue"], seeds[3])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def center_crop(image, shape):
    """Resize the shorter side to 256/224 of ``shape`` and crop the centre (evaluation)."""
    h, w = shape[0], shape[1]
    big = tf.image.resize(image, [int(round(h * IMAGENET_EVAL_RESIZE)),
                                  int(round(w * IMAGENET_EVAL_RESIZE))], antialias=True)
    return tf.image.resize_with_crop_or_pad(big, h, w)


# Records a streamed tfds split shuffles among (a buffer of encoded images:
# about 25 MB for CIFAR's PNGs, 1 GB for ImageNet's JPEGs).
RECORD_SHUFFLE_BUFFER = 10_000


def image_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, mean, std,
                  seed: int, epoch: int = 0, shuffle: bool = True, augment: bool = False,
                  flip: bool = True, cutout_length: int = 0, skip_batches: int = 0,
                  drop_remainder: bool = True, shape=None,
                  recipe: str = "cifar", shard: tuple[int, int] | None = None
                  ) -> tf.data.Dataset:
    """Batches of (normalised float32 images, int32 labels) for one epoch.

    Args:
      x, y: uint8 NHWC images and integer labels; or file paths (streamed
        folders); or a record source (a streamed tfds split, whose records
        carry their labels: ``y`` is not read).
      batch_size: global batch size.
      mean, std: per-channel normalisation (in [0, 1] units).
      seed, epoch: determine the shuffle order and the augmentation.
      augment: random crop with padding H/8 (4 for 32x32), and a flip when
        ``flip``; applied before normalisation as in the reference.
      cutout_length: cutout square side (0 = off), applied after normalisation.
      skip_batches: batches of this epoch already consumed (resume); skipped
        before anything is decoded (images and paths: before anything is read).
      shape: (H, W, C) of the images; needed when ``x`` holds file paths or
        records (each is read and decoded in the pipeline, in parallel, so
        memory does not grow with the dataset).
      recipe: 'cifar' (padded random crop + flip) or 'imagenet' (random
        resized crop + flip + colour jitter for training, resize and centre
        crop for evaluation, as train_imagenet.py).
      shard: (index, count): keep only slice ``index`` of ``count`` equal
        slices of every global batch, before it is decoded, and batch those
        (batches of ``batch_size // count``). One input pipeline per worker
        of a multi-worker strategy: together the workers read each global
        batch once.

    Images and file paths are shuffled by a full permutation drawn from
    (seed, epoch); a record source streams its records in file order through
    a shuffle buffer of ``RECORD_SHUFFLE_BUFFER`` seeded the same way. Both
    orders are the same on every run, so a resumed epoch skips exactly the
    batches already trained on.
    """
    streamed = is_streamed(x)
    if streamed and shape is None:
        raise ValueError("image_batches: file paths and records need the image shape")
    shape = tuple(shape) if shape is not None else tuple(x.shape[1:])
    if is_records(x):
        ds = x.records()
        if shuffle:
            order_seed = int(np.random.default_rng([seed, epoch]).integers(1 << 31))
            ds = ds.shuffle(min(len(x), RECORD_SHUFFLE_BUFFER), seed=order_seed,
                            reshuffle_each_iteration=False)
    else:
        order = np.arange(len(x))
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(len(x))
        ds = tf.data.Dataset.from_tensor_slices((x[order], y[order].astype(np.int32)))
    ds = ds.enumerate()
    if shard is not None:
        index, count = shard
        if batch_size % count or not drop_remainder:
            raise ValueError(f"image_batches: shards need whole batches divisible by "
                             f"{count} (batch {batch_size}, drop_remainder={drop_remainder})")
        ds = ds.take(len(x) // batch_size * batch_size)  # every shard the same batches
        slice_size = batch_size // count
    if skip_batches:
        ds = ds.skip(skip_batches * batch_size)
    if shard is not None:  # after the skip, which counts whole global batches
        ds = ds.filter(lambda k, _: (k % batch_size) // slice_size == index)
        batch_size = slice_size
    pad = max(1, shape[0] // 8) if augment else 0
    base_seed = tf.constant([seed, epoch], tf.int64)
    imagenet = recipe == "imagenet"

    def prepare(index, pair):
        image, label = pair
        element_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
        if streamed:  # decoded here; the ImageNet recipe crops the full-size image
            decode = decode_bytes if is_records(x) else decode_file
            image = decode(image, None if imagenet else shape, channels=shape[2])
        if imagenet:
            image = tf.cast(image, tf.float32)
            if augment:
                seeds = tf.random.experimental.stateless_split(element_seed, 3)
                image = random_resized_crop(image, seeds[0], shape)
                if flip:
                    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
                image = color_jitter(image, seeds[2])
            else:
                image = center_crop(image, shape)
            image.set_shape(shape)
        elif augment:
            image = augment_image(image, element_seed, pad, flip)
        image = normalize(image, mean, std)
        if cutout_length:
            image = cutout(image, element_seed + 7, cutout_length)
        return image, label

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
