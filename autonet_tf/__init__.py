"""autonet_tf: neural architecture and hyperparameter search for Keras 3.

Importing the package defines no flags and does no work; the programs in
``bin/`` build typed configs and call into the sub-packages:

* ``autonet_tf.search_space``: candidate ops, PRIMITIVES and genotypes.
* ``autonet_tf.models``: the DARTS search networks (supernets).
* ``autonet_tf.training``: architecture gradients and the search trainer.
* ``autonet_tf.data``: embedded, tfds, npz and image-folder datasets.
* ``autonet_tf.distribute``: tf.distribute strategy selection.
* ``autonet_tf.viz``: cell pictures.
"""

__version__ = "0.1.0"
