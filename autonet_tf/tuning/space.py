"""Search spaces declared in YAML, validated on load, mapped onto the unit cube.

A space file is a mapping of parameter names to declarations, either at the
top level or under ``parameters:`` (then ``trial:`` and ``objective:`` may
sit beside it)::

    trial: mlp                      # what a trial trains (see autonet_tf.tuning.trials)
    objective: {name: val_loss, direction: min}
    parameters:
      units:         {type: int, min: 8, max: 256, log: true}
      learning_rate: {type: float, min: 1.0e-4, max: 1.0e-1, log: true}
      dropout:       {type: choice, values: [0.0, 0.2, 0.5]}
      width:         {type: float, min: 0.5, max: 2.0, step: 0.25}
      epochs:        {type: fixed, value: 20}

Types: ``float`` and ``int`` (``min``, ``max``, optional ``log`` and
``step``), ``choice`` (an ordered list of ``values``), ``fixed`` (``value``).
Every non-fixed parameter is one axis of the unit cube [0, 1]^N: floats and
ints linearly or logarithmically, choices by index.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import yaml

from autonet_tf.errors import UserInputError

TYPES = ("float", "int", "choice", "fixed")
_KEYS = {"float": {"type", "min", "max", "log", "step"},
         "int": {"type", "min", "max", "log", "step"},
         "choice": {"type", "values"},
         "fixed": {"type", "value"}}


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None
    log: bool = False
    step: float | None = None
    values: tuple = ()
    value: Any = None

    @property
    def is_axis(self) -> bool:
        """Whether the parameter is an axis of the unit cube (everything but fixed)."""
        return self.type != "fixed"

    def decode(self, u: float):
        """Unit-interval coordinate -> value (ints rounded, choices by nearest index)."""
        u = min(max(float(u), 0.0), 1.0)
        if self.type == "fixed":
            return self.value
        if self.type == "choice":
            return self.values[int(round(u * (len(self.values) - 1)))]
        if self.log:
            x = math.exp(math.log(self.min) + u * (math.log(self.max) - math.log(self.min)))
        else:
            x = self.min + u * (self.max - self.min)
        if self.step:
            x = self.min + round((x - self.min) / self.step) * self.step
            x = min(x, self.max)
        if self.type == "int":
            return int(min(max(round(x), self.min), self.max))
        return float(min(max(x, self.min), self.max))

    @property
    def resolution(self) -> float:
        """The widest gap between neighbouring values on the unit axis (0: continuous).

        Choices and ints are discrete; a float with ``step`` is too. On a log
        axis the widest gap is the first one.
        """
        if self.type == "fixed":
            return 0.0
        if self.type == "choice":
            return 1.0 / (len(self.values) - 1) if len(self.values) > 1 else 0.0
        step = self.step or (1 if self.type == "int" else None)
        if not step or self.max == self.min:
            return 0.0
        if self.log:
            return math.log((self.min + step) / self.min) / math.log(self.max / self.min)
        return min(1.0, step / (self.max - self.min))

    def encode(self, value) -> float:
        """Value -> unit-interval coordinate (inverse of :meth:`decode` on its grid)."""
        if self.type == "fixed":
            return 0.0
        if self.type == "choice":
            if len(self.values) == 1:
                return 0.0
            return self.values.index(value) / (len(self.values) - 1)
        if self.max == self.min:
            return 0.0
        if self.log:
            return (math.log(value) - math.log(self.min)) / (math.log(self.max) - math.log(self.min))
        return (value - self.min) / (self.max - self.min)


@dataclasses.dataclass
class Space:
    """A validated search space, plus the trial kind and objective it declares."""

    params: list[Param]
    trial: str | None = None
    objective: dict | None = None
    source: str = "<space>"

    @property
    def axes(self) -> list[Param]:
        return [p for p in self.params if p.is_axis]

    def decode(self, point) -> dict:
        """A point of [0, 1]^N (N = number of axes) -> {name: value} for every parameter."""
        values = {p.name: p.value for p in self.params if not p.is_axis}
        for p, u in zip(self.axes, point):
            values[p.name] = p.decode(u)
        return values

    def encode(self, values: dict) -> list[float]:
        return [p.encode(values[p.name]) for p in self.axes]

    def to_hyperparameters(self):
        """The space as KerasTuner ``HyperParameters`` (for its oracles)."""
        import keras_tuner as kt

        hp = kt.HyperParameters()
        for p in self.params:
            if p.type == "fixed":
                hp.Fixed(p.name, p.value)
            elif p.type == "choice":
                numeric = all(_number(v) for v in p.values)
                hp.Choice(p.name, list(p.values), ordered=numeric)
            elif p.type == "int":
                hp.Int(p.name, int(p.min), int(p.max), step=int(p.step) if p.step else None,
                       sampling="log" if p.log else "linear")
            else:
                hp.Float(p.name, p.min, p.max, step=p.step,
                         sampling="log" if p.log else "linear")
        return hp


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load that rejects duplicate keys instead of keeping the last one."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise UserInputError(f"duplicate parameter name {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _param(name, spec, where) -> Param:
    def bad(problem):
        raise UserInputError(f"{where}: parameter {name!r}: {problem}")

    if not isinstance(name, str) or not name.strip():
        raise UserInputError(f"{where}: parameter names must be non-empty strings, got {name!r}")
    if not isinstance(spec, dict):
        bad(f"expected a mapping like {{type: float, min: 0, max: 1}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in TYPES:
        bad(f"unknown type {kind!r}; expected one of {', '.join(TYPES)}")
    extra = sorted(set(spec) - _KEYS[kind])
    if extra:
        bad(f"unknown key(s) {extra} for type {kind}; allowed: {sorted(_KEYS[kind])}")
    if kind == "fixed":
        if "value" not in spec:
            bad("type fixed needs a 'value'")
        return Param(name, kind, value=spec["value"])
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            bad("type choice needs a non-empty list 'values'")
        if len({repr(v) for v in values}) != len(values):
            bad(f"choice values repeat: {values}")
        kinds = {type(v) for v in values}
        if not all(isinstance(v, (bool, int, float, str)) for v in values) or (
                str in kinds and len(kinds) > 1):
            bad(f"choice values must be all numbers, all strings or all booleans, got {values}")
        return Param(name, kind, values=tuple(values))
    for key in ("min", "max"):
        if key not in spec:
            bad(f"type {kind} needs '{key}'")
        if not _number(spec[key]):
            bad(f"{key} must be a finite number, got {spec[key]!r}")
        if kind == "int" and not float(spec[key]).is_integer():
            bad(f"{key} must be an integer for type int, got {spec[key]!r}")
    lo, hi = spec["min"], spec["max"]
    if lo > hi:
        bad(f"min ({lo}) > max ({hi})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        bad(f"log must be true or false, got {log!r}")
    if log and lo <= 0:
        bad(f"log scale needs min > 0, got min={lo}")
    step = spec.get("step")
    if step is not None:
        if not _number(step) or step <= 0:
            bad(f"step must be a number > 0, got {step!r}")
        if kind == "int" and not float(step).is_integer():
            bad(f"step must be an integer for type int, got {step!r}")
        if log:
            bad("step and log scale cannot be combined")
    if kind == "int":
        lo, hi = int(lo), int(hi)
        step = int(step) if step is not None else None
    else:
        lo, hi = float(lo), float(hi)
    return Param(name, kind, min=lo, max=hi, log=log, step=step)


def parse_space(data, source: str = "<space>") -> Space:
    """Validates a parsed YAML document; raises UserInputError naming what is wrong."""
    if not isinstance(data, dict) or not data:
        raise UserInputError(f"{source}: expected a mapping of parameters, got {data!r}")
    trial = objective = None
    if "parameters" in data:
        extra = sorted(set(data) - {"parameters", "trial", "objective", "name"})
        if extra:
            raise UserInputError(f"{source}: unknown top-level key(s) {extra}; expected "
                                 f"parameters, trial, objective, name")
        trial = data.get("trial")
        objective = data.get("objective")
        params = data["parameters"]
        if not isinstance(params, dict) or not params:
            raise UserInputError(f"{source}: 'parameters' must be a non-empty mapping")
    else:
        params = data
    if trial is not None and not isinstance(trial, str):
        raise UserInputError(f"{source}: trial must be a name, got {trial!r}")
    if objective is not None:
        if isinstance(objective, str):
            objective = {"name": objective}
        if (not isinstance(objective, dict) or not isinstance(objective.get("name"), str)
                or objective.get("direction", "min") not in ("min", "max")
                or set(objective) - {"name", "direction"}):
            raise UserInputError(f"{source}: objective must be {{name: NAME, direction: "
                                 f"min|max}}, got {objective!r}")
    return Space([_param(n, s, source) for n, s in params.items()], trial, objective, source)


def load_space(path: str) -> Space:
    """Reads and validates a YAML space file (``yaml`` safe loading, no code)."""
    if not os.path.isfile(path):
        raise UserInputError(f"--space={path!r}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except UserInputError as e:
        raise UserInputError(f"{path}: {e}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(f"{path}: invalid YAML ({first})") from None
    return parse_space(data, path)


def builtin_space_path(name: str) -> str:
    """Path of a space shipped with the package (``spaces/<name>.yaml``)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "spaces", f"{name}.yaml")
