#!/usr/bin/env python
"""Evaluate an exported model (a SavedModel written by bin/train.py or bin/search.py).

    python bin/evaluate.py --saved_model=runs/train_digits/export/saved_model
    python bin/evaluate.py --saved_model=DIR --dataset=cifar10 --data_dir=~/tensorflow_datasets \
        --output_dir=runs/eval
    python bin/evaluate.py --saved_model=runs/train_rnn_synthetic/export/saved_model
    python bin/evaluate.py --saved_model=DIR --dataset=ptb --data_dir=~/data/penn --split=valid

Loads the SavedModel in this fresh process with tf.saved_model.load (no model
code involved), runs the test split of --dataset (default: the dataset named
in the export's metadata) and prints loss, top-1 and (more than 5 classes)
top-5 accuracy and the confusion matrix. With --output_dir it also writes
metrics.json and confusion_matrix.png there (the chief only). --strategy
(mirrored, multi_worker, tpu) splits every --batch_size batch of a
classifier across the replicas.

For a language model it prints the perplexity of --split (test) read with
the export's vocabulary (unknown words count as <unk>) in --bptt windows
over --batch_size rows (default 10, as the reference evaluation).
"""

import os
import sys

# From a checkout without installing; installed, `autonet-evaluate` is the same program.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.evaluate import run  # noqa: E402

if __name__ == "__main__":
    run()
