"""Streamed image folders and the ImageNet training recipe."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from autonet_tf.configs import DataConfig
from autonet_tf.data import images, pipeline
from autonet_tf.training.losses import smoothed_ce
from conftest import run_bin


def _folder(root, classes=2, per_class=10, size=(16, 16), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / f"class_{c}" / f"{i:03d}.png")
    return root


def _batches(ds, **kwargs):
    return [(x.numpy(), y.numpy()) for x, y in pipeline.image_batches(
        ds.x_train, ds.y_train, 4, mean=ds.mean, std=ds.std, seed=3, epoch=1,
        shape=ds.input_shape, **kwargs)]


def test_a_streamed_folder_gives_the_batches_of_the_folder_in_memory(tmp_path):
    root = _folder(tmp_path / "imgs")
    streamed = images.load(DataConfig(dataset=str(root), stream="on"), seed=1)
    memory = images.load(DataConfig(dataset=str(root), stream="off"), seed=1)
    assert streamed.streamed and not memory.streamed
    assert streamed.x_train.dtype.kind == "U" and memory.x_train.dtype == np.uint8
    assert streamed.input_shape == memory.input_shape == (16, 16, 3)
    np.testing.assert_array_equal(streamed.y_train, memory.y_train)
    np.testing.assert_allclose(streamed.mean, memory.mean, rtol=1e-9)
    np.testing.assert_allclose(streamed.std, memory.std, rtol=1e-9)
    np.testing.assert_array_equal(streamed.test_images(), memory.x_test)
    for kwargs in ({"augment": True}, {"shuffle": False, "drop_remainder": False}):
        a, b = _batches(streamed, **kwargs), _batches(memory, **kwargs)
        assert len(a) == len(b) > 1
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_allclose(xa, xb, atol=1e-6)
            np.testing.assert_array_equal(ya, yb)
    # A resumed epoch skips what it consumed before reading a file.
    resumed = _batches(streamed, augment=True, skip_batches=2)
    whole = _batches(streamed, augment=True)
    assert len(resumed) == len(whole) - 2
    for (xa, _), (xb, _) in zip(resumed, whole[2:]):
        np.testing.assert_allclose(xa, xb, atol=1e-6)


def test_auto_streams_only_large_folders_and_resizes_mixed_sizes(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs", per_class=4)
    Image.new("L", (20, 12)).save(root / "class_0" / "grey_other_size.png")
    assert not images.load(DataConfig(dataset=str(root), image_size=16), 0).streamed
    monkeypatch.setattr(images, "STREAM_ABOVE_BYTES", 1000)
    ds = images.load(DataConfig(dataset=str(root), image_size=16), 0)
    assert ds.streamed and ds.input_shape == (16, 16, 3)
    batch = next(iter(pipeline.image_batches(ds.x_train, ds.y_train, len(ds.x_train),
                                             mean=ds.mean, std=ds.std, seed=0,
                                             shape=ds.input_shape)))[0]
    assert batch.shape == (len(ds.x_train), 16, 16, 3)


def test_imagenet_recipe_crops_jitters_and_centre_crops(tmp_path):
    root = _folder(tmp_path / "imgs", per_class=3, size=(40, 30))
    ds = images.load(DataConfig(dataset=str(root), stream="on", image_size=24), 0)
    kwargs = dict(mean=ds.mean, std=ds.std, seed=0, shape=ds.input_shape, recipe="imagenet")
    train = [x.numpy() for x, _ in pipeline.image_batches(ds.x_train, ds.y_train, 2,
                                                          augment=True, **kwargs)]
    again = [x.numpy() for x, _ in pipeline.image_batches(ds.x_train, ds.y_train, 2,
                                                          augment=True, **kwargs)]
    plain = [x.numpy() for x, _ in pipeline.image_batches(ds.x_train, ds.y_train, 2,
                                                          augment=False, **kwargs)]
    assert train[0].shape == plain[0].shape == (2, 24, 24, 3)
    np.testing.assert_array_equal(train[0], again[0])  # stateless: resume-exact
    assert np.abs(train[0] - plain[0]).mean() > 0.1  # random crops and jitter differ
    assert all(np.isfinite(x).all() for x in train)


def test_label_smoothing_is_cross_entropy_against_smoothed_targets():
    logits = tf.constant([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    labels = tf.constant([0, 2])
    targets = 0.9 * tf.one_hot(labels, 3) + 0.1 / 3
    expected = -tf.reduce_sum(targets * tf.nn.log_softmax(logits), -1)
    np.testing.assert_allclose(smoothed_ce(labels, logits, 0.1), expected, rtol=1e-6)
    np.testing.assert_allclose(smoothed_ce(labels, logits, 0.0),
                               tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits),
                               rtol=1e-6)


@pytest.mark.slow
def test_imagenet_network_trains_on_a_streamed_224_pixel_folder(tmp_path):
    root = _folder(tmp_path / "imgs", per_class=6, size=(256, 240))
    run = tmp_path / "run"
    proc = run_bin("train.py", f"--dataset={root}", "--network=imagenet", "--stream=on",
                   "--image_size=224", "--genotype=DARTS_V2", "--layers=3",
                   "--init_channels=4", "--epochs=2", "--batch_size=4",
                   "--max_steps_per_epoch=1", "--noauxiliary", f"--model_dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "oneDNN CPU kernels off for the ImageNet network" in proc.stdout
    config = json.load(open(run / "config.json"))
    # train_imagenet.py's recipe for every flag not given
    assert (config["lr_schedule"], config["lr_decay"], config["label_smoothing"],
            config["weight_decay"], config["learning_rate"]) == ("exponential", 0.97, 0.1,
                                                                 3e-5, 0.1)
    assert config["data"]["stream"] == "on"
    history = [json.loads(line) for line in open(run / "history.jsonl")]
    assert [round(h["learning_rate"], 6) for h in history] == [0.1, 0.097]
    assert all(np.isfinite(h["train_loss"]) for h in history)
    assert os.path.isdir(run / "export" / "saved_model")
    meta = json.load(open(run / "export" / "metadata.json"))
    assert meta["input"]["shape"][1:] == [224, 224, 3]


def test_worker_shards_decode_only_their_slice_of_every_global_batch(tmp_path):
    root = _folder(tmp_path / "imgs", per_class=9)
    ds = images.load(DataConfig(dataset=str(root), stream="on"), seed=1)
    whole = _batches(ds, augment=True, skip_batches=1)
    shards = [_batches(ds, augment=True, skip_batches=1, shard=(i, 2)) for i in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(whole) == len(ds.x_train) // 4 - 1
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shards):
        np.testing.assert_allclose(np.concatenate([x0, x1]), x, atol=1e-6)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), y)
    # Worker 0 never opens a file of worker 1's slices: make those unreadable.
    order = np.random.default_rng([3, 1]).permutation(len(ds.x_train))
    theirs = [k for k in range(len(order)) if (k % 4) // 2 == 1]
    for k in theirs:
        os.unlink(ds.x_train[order[k]])
    again = _batches(ds, augment=True, skip_batches=1, shard=(0, 2))
    for (xa, _), (xb, _) in zip(again, shards[0]):
        np.testing.assert_allclose(xa, xb, atol=1e-6)


def test_a_streamed_tfds_split_keeps_records_encoded_and_matches_memory():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        streamed = images.load(DataConfig(dataset="cifar10", stream="on"))
        memory = images.load(DataConfig(dataset="cifar10", stream="off"))
        auto = images.load(DataConfig(dataset="cifar10"))
        assert streamed.streamed and not memory.streamed and not auto.streamed  # CIFAR fits
        assert streamed.input_shape == memory.input_shape == (32, 32, 3)
        assert len(streamed.x_train) == len(memory.x_train) == 40
        assert streamed.x_train.records().element_spec[0].dtype == tf.string  # not decoded
        np.testing.assert_array_equal(streamed.test_images(), memory.x_test)
        np.testing.assert_array_equal(streamed.test_labels(), memory.y_test)
        np.testing.assert_array_equal(np.concatenate(list(streamed.test_chunks(3))),
                                      memory.x_test)  # one pass, chunks of 3
        # In file order, no augmentation: the same batches as the arrays.
        a = _batches(streamed, shuffle=False, drop_remainder=False)
        b = _batches(memory, shuffle=False, drop_remainder=False)
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_allclose(xa, xb, atol=1e-6)
            np.testing.assert_array_equal(ya, yb)
        # Shuffled: every record once per epoch, another order each epoch, and a
        # resumed epoch continues exactly.
        shuffled = _batches(streamed, augment=True)
        labels = np.concatenate([y for _, y in shuffled])
        assert sorted(labels) == sorted(memory.y_train)
        assert not np.array_equal(labels, memory.y_train)
        resumed = _batches(streamed, augment=True, skip_batches=3)
        for (xa, ya), (xb, yb) in zip(resumed, shuffled[3:]):
            np.testing.assert_allclose(xa, xb, atol=1e-6)
            np.testing.assert_array_equal(ya, yb)
        # A subset by index (the search's weight/architecture split).
        part = streamed.x_train[np.array([5, 1, 30])]
        assert len(part) == 3
        np.testing.assert_array_equal(part.labels(), memory.y_train[[1, 5, 30]])
        np.testing.assert_array_equal(part.images((32, 32, 3)), memory.x_train[[1, 5, 30]])


@pytest.mark.slow
def test_search_and_training_run_and_continue_on_a_streamed_tfds_split(tmp_path):
    import tensorflow_datasets as tfds

    from autonet_tf.configs import SearchConfig, TrainConfig
    from autonet_tf.search import run_search
    from autonet_tf.train import run_train

    data = DataConfig(dataset="cifar10", stream="on")
    with tfds.testing.mock_data(num_examples=48):
        search = SearchConfig(data=data, model_dir=str(tmp_path / "s"), epochs=1,
                              batch_size=8, layers=2, init_channels=4, steps=1, multiplier=1,
                              max_steps_per_epoch=2, progress=False)
        found = run_search(search)
        history = [json.loads(line) for line in open(tmp_path / "s" / "history.jsonl")]
        assert len(history) == 1 and np.isfinite(history[0]["val_loss"])
        train = TrainConfig(data=data, model_dir=str(tmp_path / "t"), genotype="DARTS_V2",
                            epochs=2, batch_size=8, layers=3, init_channels=4,
                            cutout_length=0, max_steps_per_epoch=2, progress=False,
                            export=False)
        first = run_train(dataclasses.replace(train, epochs=1))
        both = run_train(train)  # continues from epoch 1's checkpoint
        assert [h["epoch"] for h in both.history] == [1, 2]
        assert both.history[0] == first.history[0]
        assert 0.0 <= both.history[1]["val_accuracy"] <= 1.0
    assert found.genotype is not None
