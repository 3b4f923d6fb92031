#!/usr/bin/env python
"""Runs autonet_tf.programs.tune from a checkout: `python bin/tune.py --help` (installed: autonet-tune)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.tune import run  # noqa: E402

if __name__ == "__main__":
    run()
