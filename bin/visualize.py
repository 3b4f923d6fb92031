#!/usr/bin/env python
"""Draw the cells of a genotype.

    python bin/visualize.py --genotype=DARTS_V2 --output=darts_v2.png
    python bin/visualize.py --genotype=runs/search_digits/genotype.json --output=cells.svg
    python bin/visualize.py --model=rnn --genotype=DARTS_V2 --output=darts_rnn.png

Writes <stem>_normal.<ext> and <stem>_reduce.<ext> (CNN) or
<stem>_recurrent.<ext> (--model=rnn); the format (png, svg,
pdf) comes from the --output extension. Without the graphviz 'dot' program
the Graphviz sources (.dot) are written instead, with a warning.
"""

import os
import sys

# From a checkout without installing; installed, `autonet-visualize` is the same program.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonet_tf.programs.visualize import run  # noqa: E402

if __name__ == "__main__":
    run()
