"""Run-directory storage: checked creation, atomic writes, any tf.io.gfile filesystem."""
