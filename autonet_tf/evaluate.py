"""Evaluating an exported classifier on a dataset's test split.

Works from the SavedModel alone (``tf.saved_model.load``; no model code is
needed): loss, top-1 and (with more than 5 classes) top-5 accuracy, and the
confusion matrix, printed and optionally written as JSON + PNG.
"""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
import tensorflow as tf

from autonet_tf.configs import DataConfig
from autonet_tf.data import images, text
from autonet_tf.errors import UserInputError
from autonet_tf.export import LoadedClassifier
from autonet_tf.lm_export import LoadedLanguageModel
from autonet_tf.io import run_dir


@dataclasses.dataclass
class Evaluation:
    loss: float
    top1: float
    top5: float | None
    confusion: np.ndarray  # rows: true class, columns: predicted class
    class_names: list[str]
    count: int

    def to_dict(self) -> dict:
        return {"loss": self.loss, "top1": self.top1, "top5": self.top5, "count": self.count,
                "class_names": self.class_names, "confusion_matrix": self.confusion.tolist()}


def score(probabilities: np.ndarray, labels: np.ndarray, class_names) -> Evaluation:
    """Cross entropy, top-1/top-5 accuracy and the confusion matrix."""
    labels = np.asarray(labels, np.int64)
    n, k = probabilities.shape
    picked = probabilities[np.arange(n), labels]
    loss = float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0)))) if n else float("nan")
    predicted = probabilities.argmax(axis=1)
    top1 = float(np.mean(predicted == labels)) if n else float("nan")
    top5 = None
    if k > 5:
        best5 = np.argsort(-probabilities, axis=1)[:, :5]
        top5 = float(np.mean((best5 == labels[:, None]).any(axis=1))) if n else float("nan")
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return Evaluation(loss, top1, top5, confusion, list(class_names), n)


def format_confusion(evaluation: Evaluation, max_classes: int = 20) -> str:
    """The confusion matrix as a text table (first ``max_classes`` classes)."""
    names = [str(c)[:8] for c in evaluation.class_names][:max_classes]
    m = evaluation.confusion[:max_classes, :max_classes]
    width = max(5, max(len(n) for n in names), len(str(int(m.max()) if m.size else 0)))
    corner = "true \\ predicted"
    label = max(len(corner), max(len(n) for n in names)) + 2  # the row-label column
    lines = [corner.ljust(label) + " ".join(n.rjust(width) for n in names)]
    for name, row in zip(names, m):
        lines.append(name.ljust(label) + " ".join(str(int(v)).rjust(width) for v in row))
    if len(evaluation.class_names) > max_classes:
        lines.append(f"(first {max_classes} of {len(evaluation.class_names)} classes)")
    return "\n".join(lines)


def plot_confusion(evaluation: Evaluation, path: str) -> None:
    """Writes the row-normalised confusion matrix as an image (PNG/SVG/PDF by extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = evaluation.confusion.astype(np.float64)
    rows = np.maximum(m.sum(axis=1, keepdims=True), 1)
    k = len(evaluation.class_names)
    size = min(4 + 0.4 * k, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m / rows, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        ax.set_xticks(range(k), evaluation.class_names, rotation=90)
        ax.set_yticks(range(k), evaluation.class_names)
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] / rows[i, 0] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top5 = f", top-5 {evaluation.top5:.4f}" if evaluation.top5 is not None else ""
    ax.set_title(f"top-1 {evaluation.top1:.4f}{top5} on {evaluation.count} images")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=os.path.splitext(path)[1][1:] or "png")
    plt.close(fig)
    run_dir.write_bytes(path, buffer.getvalue())


def evaluate_export(saved_model_dir: str, data: DataConfig | None = None,
                    batch_size: int = 256, seed: int | None = None,
                    strategy: tf.distribute.Strategy | None = None) -> Evaluation:
    """Loads the export, reads the dataset (default: the one it was trained on), scores it.

    ``seed`` picks the test split of datasets that have none (digits, image
    folders); by default the training run's, so the split is the one it held out.
    """
    model = LoadedClassifier(saved_model_dir)
    meta = model.metadata
    if data is None:
        data = DataConfig(dataset=meta.get("dataset", "digits"),
                          test_fraction=float(meta.get("test_fraction", 0.2)))
    if seed is None:
        seed = int(meta.get("split_seed", 0))
    data.validate()
    if data.image_size is None and run_dir.isdir(data.dataset):
        data = dataclasses.replace(data, image_size=model.input_shape[0])
    dataset = images.load(data, seed)
    if tuple(dataset.input_shape) != tuple(model.input_shape):
        raise UserInputError(
            f"--dataset={data.dataset!r} has images of shape {dataset.input_shape}, but "
            f"the model at --saved_model={saved_model_dir!r} takes {tuple(model.input_shape)}")
    if dataset.num_classes != len(model.class_names):
        raise UserInputError(
            f"--dataset={data.dataset!r} has {dataset.num_classes} classes, but the model "
            f"predicts {len(model.class_names)}")
    if dataset.streamed:  # decoded a chunk at a time: memory stays flat
        chunk = max(batch_size, 4096)
        parts = [model.predict(images, batch_size, strategy)
                 for images in dataset.test_chunks(chunk)]
        probabilities = np.concatenate(parts)
    else:
        probabilities = model.predict(dataset.x_test, batch_size, strategy)
    return score(probabilities, dataset.test_labels(), model.class_names)


def write_report(evaluation: Evaluation, output_dir: str) -> list[str]:
    """Writes metrics.json and confusion_matrix.png into ``output_dir``."""
    run_dir.prepare(output_dir, "output_dir")
    metrics = os.path.join(output_dir, "metrics.json")
    run_dir.write_json(metrics, evaluation.to_dict())
    picture = os.path.join(output_dir, "confusion_matrix.png")
    plot_confusion(evaluation, picture)
    return [metrics, picture]


def evaluate_language_model(saved_model_dir: str, dataset: str | None = None,
                            data_dir: str | None = None, split: str = "test",
                            batch_size: int = 10, bptt: int | None = None) -> dict:
    """Perplexity of an exported language model on a corpus split, in this process.

    The split is encoded with the export's own vocabulary (``vocab.txt``):
    words it lacks read as ``<unk>``, as during training.
    """
    model = LoadedLanguageModel(saved_model_dir)
    if model.vocab is None:
        raise UserInputError(f"--saved_model={saved_model_dir!r}: no vocab.txt beside it "
                             f"(expected in the export directory)")
    meta = model.metadata
    dataset = dataset or meta.get("dataset", "synthetic")
    ids, unknown = text.load_split(dataset, data_dir, split, model.vocab)
    rows = text.batchify(ids, batch_size, f"{split} split")
    result = model.perplexity(rows, bptt or int(meta.get("bptt", 35)))
    return {**result, "tokens": int(rows.size), "unknown_words": int(unknown),
            "dataset": dataset, "split": split}
