#!/usr/bin/env python
"""Runs autonet_tf.programs.visualize from a checkout: `python bin/visualize.py --help` (installed: autonet-visualize)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.visualize import run  # noqa: E402

if __name__ == "__main__":
    run()
