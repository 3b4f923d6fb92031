"""Export: the SavedModel reloaded in a fresh process and the TFLite file agree with Keras."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from autonet_tf import export
from autonet_tf.configs import TrainConfig
from autonet_tf.data import pipeline
from autonet_tf.train import run_train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("train") / "run")
    config = TrainConfig(model_dir=d, genotype="DARTS_V2", epochs=1, batch_size=32, layers=3,
                         init_channels=4, cutout_length=0, max_steps_per_epoch=3,
                         progress=False, tflite=True)
    return run_train(config)


def test_export_layout_and_metadata(trained):
    d = trained.export_dir
    assert sorted(os.listdir(d)) == ["metadata.json", "model.tflite", "saved_model"]
    meta = json.load(open(os.path.join(d, "metadata.json")))
    assert meta == export.read_metadata(os.path.join(d, "saved_model"))
    assert meta["format"] == export.FORMAT
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["input"]["shape"] == [None, 8, 8, 1] and meta["input"]["range"] == [0, 255]
    assert meta["parameters"] == trained.parameters == trained.trainer.model.count_parameters()
    assert meta["genotype"] == trained.genotype.to_dict()
    assert meta["dataset"] == "digits" and meta["test_accuracy"] == trained.test_accuracy
    assert "created" in meta and meta["tflite"] == "model.tflite"
    # No temporary folders are left beside the run directory's export.
    assert not [f for f in os.listdir(trained.model_dir) if f.startswith(".export_")]


@pytest.mark.process
def test_saved_model_in_a_fresh_process_matches_the_in_memory_model(trained, tmp_path):
    data = trained.trainer.dataset
    images = data.x_test[:16]
    # In memory: the trained network on images normalised exactly as in training.
    logits = trained.trainer.model(pipeline.normalize(images, data.mean, data.std),
                                   training=False)
    expected = tf.nn.softmax(logits).numpy()
    np.save(tmp_path / "images.npy", images)
    code = (
        "import numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({os.path.join(trained.export_dir, 'saved_model')!r})\n"
        f"x = np.load({str(tmp_path / 'images.npy')!r}).astype(np.float32)\n"
        "np.save('out.npy', m.serve(tf.constant(x)).numpy())\n"
        "sig = m.signatures['serving_default']\n"
        "np.save('sig.npy', list(sig(tf.constant(x)).values())[0].numpy())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out.npy")
    assert got.shape == (16, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "sig.npy"), got, rtol=1e-6, atol=1e-7)
    # Not a constant model: the predictions differ between images.
    assert np.abs(got - got.mean(axis=0)).max() > 1e-3


def test_saved_model_stores_the_served_variables_once(trained):
    saved = os.path.join(trained.export_dir, "saved_model")
    m = tf.saved_model.load(saved)
    # The trainable variables the serving function reads are the network's
    # parameters without the auxiliary head; BatchNorm statistics come too.
    assert sum(int(np.prod(v.shape)) for v in m.trainable_variables) == trained.parameters
    assert m.non_trainable_variables and all(not v.trainable for v in m.non_trainable_variables)
    assert len(m.variables) == len(m.trainable_variables) + len(m.non_trainable_variables)
    assert set(m.signatures) == {"serve", "serving_default"}
    # Each variable is stored once (plus the object graph entry).
    stored = tf.train.load_checkpoint(os.path.join(saved, "variables", "variables"))
    assert len(stored.get_variable_to_shape_map()) == len(m.variables) + 1


def test_tflite_agrees_and_has_no_variable_ops(trained):
    path = os.path.join(trained.export_dir, "model.tflite")
    assert export.tflite_variable_ops(path) == []
    data = trained.trainer.dataset
    images = data.x_test[:4].astype(np.float32)
    reference = export.LoadedClassifier(
        os.path.join(trained.export_dir, "saved_model")).predict(images)
    interpreter = tf.lite.Interpreter(model_path=path)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(images.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], images)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-5)


def test_read_metadata_rejects_folders_that_are_not_our_exports(tmp_path):
    from autonet_tf.errors import UserInputError

    with pytest.raises(UserInputError, match="does not exist"):
        export.read_metadata(str(tmp_path / "missing"))
    with pytest.raises(UserInputError, match="not a SavedModel"):
        export.read_metadata(str(tmp_path))
    # An export folder: the programs look inside it; the library names the inner folder.
    inner = tmp_path / "export" / "saved_model"
    inner.mkdir(parents=True)
    (inner / "saved_model.pb").write_bytes(b"")
    assert export.find_saved_model(str(tmp_path / "export")) == str(inner)
    assert export.find_saved_model(str(inner)) == str(inner)
    with pytest.raises(UserInputError, match="did you mean .*export/saved_model"):
        export.read_metadata(str(tmp_path / "export"))
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "other"))
    with pytest.raises(UserInputError, match="not an autonet_tf export"):
        export.read_metadata(str(tmp_path / "other"))


def test_each_endpoint_is_traced_once_and_serves_the_model(tmp_path):
    # save_endpoints traces an endpoint as the save will, so the save reuses
    # that trace instead of tracing the model a second time.
    import keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    traces = []

    def serve(x):
        traces.append(1)
        return model(x)

    path = str(tmp_path / "saved")
    export.save_endpoints(path, {"serve": (serve, [tf.TensorSpec((None, 8), tf.float32)])})
    assert len(traces) == 1
    loaded = tf.saved_model.load(path)
    x = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    np.testing.assert_allclose(loaded.serve(x), model(x), rtol=1e-6)
    np.testing.assert_allclose(loaded.signatures["serving_default"](tf.constant(x))["output_0"],
                               model(x), rtol=1e-6)
    assert len(loaded.variables) == 2
