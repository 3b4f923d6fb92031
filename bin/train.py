#!/usr/bin/env python
"""Runs autonet_tf.programs.train from a checkout: `python bin/train.py --help` (installed: autonet-train)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.train import run  # noqa: E402

if __name__ == "__main__":
    run()
