#!/usr/bin/env python
"""Train a discovered network from scratch, evaluate it on the test split, export it.

    python bin/train.py --genotype=DARTS_V2                       # embedded digits
    python bin/train.py --genotype=runs/search_digits/genotype.json --tflite
    python bin/train.py --genotype=DARTS_V2 --dataset=cifar10 --data_dir=~/tensorflow_datasets
    python bin/train.py --model=rnn --genotype=DARTS_V2           # generated corpus
    python bin/train.py --model=rnn --genotype=DARTS_V2 --dataset=ptb --data_dir=~/data/penn

Flags left unset take the DARTS paper's values (train.py: 600 epochs, batch
96, 20 cells, C=36, auxiliary 0.4, drop path 0.2, cutout 16), except on the
embedded 'digits' dataset, where a small network trains in about a minute.
Rerunning the same command resumes from the last checkpoint in --model_dir.
The export (SavedModel + metadata.json, model.tflite with --tflite) lands in
<model_dir>/export.

--model=rnn trains a recurrent cell's language model with the reference
rnn/train.py values (emsize = nhid = 850, batch 64, SGD lr 20 then averaged
SGD, 8000 epochs at most), or small ones on the generated 'synthetic' corpus;
the export scores token sequences (SavedModel + vocab.txt).
"""

import os
import sys

# From a checkout without installing; installed, `autonet-train` is the same program.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.train import run  # noqa: E402

if __name__ == "__main__":
    run()
