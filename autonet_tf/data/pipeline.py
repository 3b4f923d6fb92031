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


def image_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, mean, std,
                  seed: int, epoch: int = 0, shuffle: bool = True, augment: bool = False,
                  flip: bool = True, cutout_length: int = 0, skip_batches: int = 0,
                  drop_remainder: bool = True) -> tf.data.Dataset:
    """Batches of (normalised float32 images, int32 labels) for one epoch.

    Args:
      x, y: uint8 NHWC images and integer labels.
      batch_size: global batch size.
      mean, std: per-channel normalisation (in [0, 1] units).
      seed, epoch: determine the shuffle order and the augmentation.
      augment: random crop with padding H/8 (4 for 32x32), and a flip when
        ``flip``; applied before normalisation as in the reference.
      cutout_length: cutout square side (0 = off), applied after normalisation.
      skip_batches: batches of this epoch already consumed (resume).
    """
    n = len(x)
    order = np.arange(n)
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n)
    ds = tf.data.Dataset.from_tensor_slices((x[order], y[order].astype(np.int32)))
    pad = max(1, x.shape[1] // 8) if augment else 0
    base_seed = tf.constant([seed, epoch], tf.int64)

    def prepare(index, pair):
        image, label = pair
        element_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
        if augment:
            image = augment_image(image, element_seed, pad, flip)
        image = normalize(image, mean, std)
        if cutout_length:
            image = cutout(image, element_seed + 7, cutout_length)
        return image, label

    ds = ds.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if skip_batches:
        ds = ds.skip(skip_batches)
    return ds.prefetch(tf.data.AUTOTUNE)
