"""Config files and ``key=value`` overrides onto the validated config dataclasses.

Beside flags, a run's settings can come from a file::

    bin/search.py --config_file=runs/search_digits/config.json --model_dir=runs/again
    bin/train.py --config_file=run.yaml --params_override=epochs=5,data.dataset=cifar10

Precedence, lowest first: the dataclass defaults and the program's presets,
then the file (YAML or JSON; a run's own ``config.json`` works as it is),
then flags given on the command line, then ``--params_override``. Keys are
the config's field names (``config.json``'s keys); nested fields are dotted
(``data.dataset``). ``model_dir`` is never taken from a file: a repeated run
gets its own directory (``--model_dir``), and a file cannot silently point a
run at another run's checkpoints. A key the config does not have is an error
naming it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re

import yaml

from autonet_tf.errors import UserInputError

class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``5e-07`` (json.dumps' way of writing floats) as a string; JSON and
    YAML 1.2 read it as a float, and so does this loader."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only


#: fields a file never sets (see the module docstring)
_NOT_FROM_FILE = ("model_dir",)


def load(path: str) -> dict:
    """The mapping in a YAML or JSON file (one clear error when it is not one)."""
    from autonet_tf.io import run_dir  # TensorFlow's filesystems: local, gs://, ...

    if not run_dir.exists(path):
        raise UserInputError(f"--config_file={path!r} does not exist")
    try:
        values = _yaml(run_dir.read_text(path))
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0]
        raise UserInputError(f"--config_file={path!r} is not YAML or JSON ({first})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserInputError(f"--config_file={path!r} holds a {type(values).__name__}, "
                             f"expected a mapping of config keys to values")
    return values


def parse_overrides(text: str) -> dict:
    """``"a=1,data.dataset=cifar10"`` -> ``{"a": 1, "data": {"dataset": "cifar10"}}``.

    Values are read as YAML scalars or lists (``1e-3``, ``true``, ``null``,
    ``[1, 2]``); a comma starts a new pair only where ``key=`` follows.
    """
    values: dict = {}
    if not text or not text.strip():
        return values
    for pair in re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", text):
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*", key):
            raise UserInputError(f"--params_override: {pair.strip()!r} is not key=value "
                                 f"(e.g. --params_override=epochs=5,data.dataset=cifar10)")
        try:
            value = _yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw.strip()
        target = values
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UserInputError(f"--params_override: {key!r} sets a field of a value")
        target[last] = value
    return values


def _coerce(current, value):
    """An int where a float field is expected becomes a float (YAML's ``1`` for ``1.0``)."""
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def merge(config, values: dict, source: str, keep=lambda path: False, prefix: str = ""):
    """``config`` with ``values`` applied (nested dataclasses by nested mappings).

    Args:
      source: names the origin in errors ("--config_file=x", "--params_override").
      keep: ``keep("data.dataset")`` true: the field keeps its current value
        (a flag given on the command line outranks the file).
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise UserInputError(f"{source}: {type(config).__name__} has no field "
                                 f"{path!r}{hint}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserInputError(f"{source}: {path!r} must be a mapping of its fields")
            changes[key] = merge(current, value, source, keep, prefix=f"{path}.")
        elif not keep(path):
            changes[key] = _coerce(current, value)
    return dataclasses.replace(config, **changes)


def file_values(config_file: str | None) -> dict:
    """The file's config keys: ``model_dir`` dropped, a run record's ``genotype_spec``
    (training config.json: the genotype trained) as the inline-JSON ``genotype``."""
    if not config_file:
        return {}
    values = load(config_file)
    spec = values.pop("genotype_spec", None)
    if isinstance(spec, dict):
        values["genotype"] = json.dumps(spec)
    for key in _NOT_FROM_FILE:
        values.pop(key, None)
    return values


def flat(values: dict, prefix: str = "") -> dict:
    """``{"data": {"dataset": x}, "epochs": 5}`` -> ``{"data.dataset": x, "epochs": 5}``."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def apply(config, from_file: dict, overrides: dict, config_file: str = "",
          flag_given=lambda path: False):
    """``config`` with the file's values (where no flag was given) and the overrides, validated.

    Args:
      flag_given: ``flag_given("epochs")`` true when the flag that sets that
        field was given on the command line (it then outranks the file).
    """
    if from_file:
        config = merge(config, from_file, f"--config_file={config_file!r}", flag_given)
    if overrides:
        config = merge(config, overrides, "--params_override")
    config.validate()
    return config
