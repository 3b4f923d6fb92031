"""Make every layer and variable of a Keras 3 model reachable by ``tf.train.Checkpoint``.

Keras 3 wraps list, dict and set attributes of a layer (``self.cells = [...]``)
in its own tracked containers, which TensorFlow's object graph does not
follow when it writes a checkpoint (it does follow them for SavedModel). A
``tf.train.Checkpoint(model=model)`` therefore silently skips every layer
held in a list, and with it their BatchNorm moving statistics; their
trainable weights only come back when an optimizer happens to track them.

:class:`CheckpointCollections` fixes this for one class and everything it
holds: each tracked container attribute becomes a checkpoint child named
after the attribute, whose children are its items (``cells/0/edges/3/...``).
:func:`unreachable_variables` is the guard that keeps it true: the epoch loop
refuses to start when any variable of the objects it checkpoints is not in
the checkpoint's object graph.
"""

from __future__ import annotations

import keras
import tensorflow as tf

_Trackable = tf.__internal__.tracking.Trackable


class _Items(_Trackable):
    """A checkpoint node for one container attribute; its children are the items."""

    def __init__(self, owner, attr: str):
        self._owner = owner
        self._attr = attr

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        items = getattr(self._owner, self._attr, None)
        if isinstance(items, dict):
            pairs = ((str(k), v) for k, v in items.items())
        elif isinstance(items, (list, tuple)):
            pairs = ((str(i), v) for i, v in enumerate(items))
        else:  # sets have no stable order; none of our layers keeps one
            pairs = ()
        return {k: v for k, v in pairs if isinstance(v, _Trackable)}


class CheckpointCollections:
    """Mixin for Keras layers: list/dict attributes become part of ``tf.train.Checkpoint``.

    Put it first among the bases (``class Cell(CheckpointCollections,
    keras.layers.Layer)``). The node of each attribute is created once and
    reused, as the object graph requires stable identities.
    """

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        if save_type != "checkpoint":
            return children  # SavedModels: exports store only the variables they read
        nodes = self.__dict__.setdefault("_checkpoint_items", {})
        for attr in getattr(self, "_tracked", ()):
            items = getattr(self, attr, None)
            if attr in children or not isinstance(items, (list, dict)):
                continue
            values = items.values() if isinstance(items, dict) else items
            if not any(isinstance(v, _Trackable) for v in values):
                # Most tracked containers of a Keras layer are empty: leaving
                # them out halves a supernet's object graph, which TensorFlow
                # walks in Python on every save.
                continue
            if attr not in nodes:
                nodes[attr] = _Items(self, attr)
            children[attr] = nodes[attr]
        return children


def checkpoint_variables(root) -> list:
    """Every variable (Keras or TensorFlow) in ``root``'s checkpoint object graph."""
    return [d for d in tf.train.TrackableView(root).descendants()
            if isinstance(d, (tf.Variable, keras.Variable))]


def unreachable_variables(root, objects) -> list[str]:
    """Paths of the variables of ``objects`` that ``root``'s checkpoint would not hold.

    Args:
      root: a ``tf.train.Checkpoint`` (or any trackable).
      objects: models, optimizers and other objects with a ``variables``
        attribute (a list of Keras or TensorFlow variables).
    """
    reachable = {id(v) for v in checkpoint_variables(root)}
    missing = []
    for obj in objects:
        for v in getattr(obj, "variables", ()) or ():
            if id(v) not in reachable:
                missing.append(getattr(v, "path", None) or v.name)
    return missing
