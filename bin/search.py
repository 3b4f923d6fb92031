#!/usr/bin/env python
"""Runs autonet_tf.programs.search from a checkout: `python bin/search.py --help` (installed: autonet-search)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.search import run  # noqa: E402

if __name__ == "__main__":
    run()
