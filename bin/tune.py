#!/usr/bin/env python
"""Hyperparameter search (and random-search NAS) with KerasTuner oracles.

    python bin/tune.py                                          # iris MLP, weighted random
    python bin/tune.py --space=simple_cnn --oracle=random --dataset=octmnist.npz
    python bin/tune.py --space=my_space.yaml --oracle=bayesian --max_trials=30
    python bin/tune.py --workers=2                              # chief + 2 local workers

--space is a YAML file or a shipped space (iris_mlp, simple_cnn,
darts_search). Rerunning the same command resumes: finished trials are not
repeated. Results land in <directory>/search/: trials.jsonl,
best_hyperparameters.json, objective.png, accuracy.png and TensorBoard
HParams logs (logs/hparams).

Several hosts: start the chief with --role=chief (it binds --chief_address,
127.0.0.1 by default; use 0.0.0.0 or a host address to accept other hosts)
and one --role=worker process per worker with the chief's address, all with
the same flags otherwise (see README.md).

Devices: every trial of a process runs under --strategy (e.g. mirrored over
--num_devices devices); --workers=N --devices_per_worker=K gives each local
worker its own K GPUs (CUDA_VISIBLE_DEVICES), or K logical CPU devices on a
machine without GPUs.
"""

import os
import sys

# From a checkout without installing; installed, `autonet-tune` is the same program.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.tune import run  # noqa: E402

if __name__ == "__main__":
    run()
