#!/usr/bin/env python
"""DARTS cell search: CNN cells on images or a recurrent cell on a text corpus.

    python bin/search.py                                  # embedded digits, quick
    python bin/search.py --dataset=cifar10 --data_dir=~/tensorflow_datasets
    python bin/search.py --dataset=cifar10 --order=second --model_dir=runs/c10
    python bin/search.py --model=rnn                      # generated corpus, quick
    python bin/search.py --model=rnn --dataset=ptb --data_dir=~/data/penn

Flags left unset take the DARTS paper's values (train_search.py), except on
the embedded 'digits' dataset, where a smaller supernet and fewer epochs make
the whole run take minutes on 2 CPU cores. With --model=rnn, unset flags take
the reference rnn/train_search.py values (emsize = nhid = 300, batch 256,
bptt 35, SGD lr 20, clip 0.25), or small ones on the generated 'synthetic'
corpus (the --model=rnn default dataset). After the search the discovered
network is trained from scratch (--train_* flags, the paper's train.py
defaults; quick ones on digits) and exported to <model_dir>/train/export;
--noretrain stops after the search. Rerunning the same command resumes from
the last checkpoint of whichever stage was interrupted.
"""

import os
import sys

# From a checkout without installing; installed, `autonet-search` is the same program.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.search import run  # noqa: E402

if __name__ == "__main__":
    run()
