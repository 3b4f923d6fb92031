"""The command-line programs: ``autonet-search``, ``autonet-train``,
``autonet-evaluate``, ``autonet-tune``, ``autonet-visualize`` once installed
(``bin/<name>.py`` in a checkout). Each module defines its absl flags,
``main(argv)`` and ``run()``; ``python -m autonet_tf.programs.<name>`` works too.
"""
