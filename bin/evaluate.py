#!/usr/bin/env python
"""Runs autonet_tf.programs.evaluate from a checkout: `python bin/evaluate.py --help` (installed: autonet-evaluate)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.evaluate import run  # noqa: E402

if __name__ == "__main__":
    run()
