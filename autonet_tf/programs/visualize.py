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

from absl import flags

from autonet_tf import cli

FORMATS = ("png", "svg", "pdf", "dot")
flags.DEFINE_string("genotype", None, "DARTS_V1, DARTS_V2, a genotype JSON file or inline "
                    "JSON.", required=True)
flags.DEFINE_enum("model", "cnn", ["cnn", "rnn"], "CNN cells or a recurrent cell.")
flags.DEFINE_string("output", "genotype.png", "Output path; its extension picks the format "
                    f"({', '.join(FORMATS)}). A CNN genotype is drawn as two files, "
                    "<stem>_normal.<ext> and <stem>_reduce.<ext>; a recurrent one as "
                    "<stem>_recurrent.<ext>.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    stem, ext = os.path.splitext(FLAGS.output)
    fmt = ext[1:].lower()
    if fmt not in FORMATS or not os.path.basename(stem):
        cli.fail(f"--output={FLAGS.output!r} is invalid: expected a file name ending in "
                 f"{', '.join('.' + f for f in FORMATS)}")
    # No TensorFlow: a local genotype file is read directly (a gs:// one
    # made cli.run start TensorFlow before this).
    from autonet_tf.search_space.genotypes import load_genotype
    from autonet_tf.search_space.rnn_genotypes import load_recurrent_genotype
    from autonet_tf.io import run_dir
    from autonet_tf.viz.cells import plot_genotype

    load = load_recurrent_genotype if FLAGS.model == "rnn" else load_genotype
    genotype = load(FLAGS.genotype)
    run_dir.check_writable_parent(os.path.dirname(os.path.abspath(FLAGS.output)), "output")
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    written, warnings = plot_genotype(genotype, stem, fmt)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}")


def run() -> None:
    """The console entry point ``autonet-visualize``."""
    cli.run(main, flags_first=True)


if __name__ == "__main__":
    run()
