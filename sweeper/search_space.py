"""Search spaces as data: one YAML file per model family.

A search space file has two sections (the Hydra Optuna sweeper habit): ``fixed`` parameters are
passed to the estimator as is, and ``searched`` parameters are distributions in Optuna's
vocabulary. A parameter is either fixed or searched, never both::

    # search_spaces/random_forest.yaml
    fixed:            # optional mapping: passed to the estimator as is
      criterion: squared_error
    searched:         # required, non-empty mapping: name -> distribution spec
      n_estimators: {type: int, low: 50, high: 300, log: true}
      max_features: {type: float, low: 0.2, high: 1.0}
      min_samples_leaf: {type: int, low: 1, high: 20, step: 1}
      bootstrap: {type: categorical, choices: [true, false]}

:func:`load_search_space` validates everything up front and raises
:class:`~sweeper.errors.SweepError` with a one-line message naming the file, the key path, the
rule and the bad value, e.g.
``search_spaces/random_forest.yaml: searched.max_depth: `low <= high` must hold, but got
(low=5, high=1)``. Our checks run before Optuna's own, so the user sees our messages; Optuna's
checks still run when the distributions are built.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import optuna
import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweeper.errors import SweepError

__all__ = ["SearchSpace", "load_search_space"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_TOP_LEVEL_KEYS = ("fixed", "searched")
_TYPES = ("int", "float", "categorical")
# Keys per distribution type, in the order they are listed in messages.
_KEYS_BY_TYPE: Mapping[str, tuple[str, ...]] = {
    "int": ("type", "low", "high", "step", "log"),
    "float": ("type", "low", "high", "step", "log"),
    "categorical": ("type", "choices"),
}
_ALL_SPEC_KEYS = frozenset(key for keys in _KEYS_BY_TYPE.values() for key in keys)
# Longer reprs are cut so that a message stays one readable line.
_MAX_SHOWN_CHARS = 60
# PyYAML implements YAML 1.1, whose float pattern needs a dot in the mantissa and a sign in the
# exponent: `1e-3` and `1.0e3` are read as strings. This matches such strings so that the error
# can say how to write the number instead.
_EXPONENT_STRING = re.compile(r"^([+-]?)(\d+)(?:\.(\d*))?[eE]([+-]?)(\d+)$")


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: fixed parameters plus Optuna distributions.

    Attributes:
        family: The model family this space belongs to, e.g. ``"random_forest"``.
        path: The YAML file it was loaded from.
        fixed: Parameters passed to the estimator as is (read-only).
        searched: Parameter name -> Optuna distribution, in file order (read-only).
    """

    family: str
    path: Path
    fixed: Mapping[str, Any]
    searched: Mapping[str, BaseDistribution]

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest every searched parameter on ``trial`` and return ``fixed | suggested``.

        Each parameter is suggested under its own name with ``trial.suggest_int``,
        ``trial.suggest_float`` or ``trial.suggest_categorical``, so the trial's params are
        exactly the searched names, and :class:`~optuna.trial.FixedTrial` works too.
        """
        suggested: dict[str, Any] = {}
        for name, distribution in self.searched.items():
            if isinstance(distribution, IntDistribution):
                suggested[name] = trial.suggest_int(
                    name,
                    distribution.low,
                    distribution.high,
                    step=distribution.step,
                    log=distribution.log,
                )
            elif isinstance(distribution, FloatDistribution):
                suggested[name] = trial.suggest_float(
                    name,
                    distribution.low,
                    distribution.high,
                    step=distribution.step,
                    log=distribution.log,
                )
            elif isinstance(distribution, CategoricalDistribution):
                suggested[name] = trial.suggest_categorical(name, distribution.choices)
            else:
                raise TypeError(f"unsupported distribution for {name!r}: {distribution!r}")
        # Deep-copied so that a caller mutating a fixed list or mapping cannot change the space.
        return {**copy.deepcopy(dict(self.fixed)), **suggested}

    def distributions(self) -> dict[str, BaseDistribution]:
        """Return the searched distributions, e.g. for ``study.add_trial`` or ``enqueue_trial``."""
        return dict(self.searched)


def load_search_space(
    path: str | Path,
    *,
    family: str,
    accepted_params: Collection[str] | None = None,
    estimator_name: str | None = None,
    reserved_params: Mapping[str, str] | None = None,
) -> SearchSpace:
    """Load and validate the search space YAML at ``path``.

    Args:
        path: The YAML file.
        family: The model family name, recorded on the result and named in some messages.
        accepted_params: If given, every fixed or searched parameter must be one of these
            (typically ``Estimator().get_params().keys()``).
        estimator_name: The estimator class name, used in the message for a parameter that is
            not in ``accepted_params``.
        reserved_params: Parameter name -> why the sweep sets it itself; such a parameter may
            not appear in the file (e.g. ``{"random_state": "set from the sweep's seed"}``).

    Raises:
        SweepError: The file is missing, unreadable, not valid YAML, or breaks a rule.
    """
    path = Path(path)
    where = _display_path(path)
    document = _read_yaml(path, where, family)
    fixed, searched_specs = _split_top_level(document, where)

    fixed_params: dict[str, Any] = {}
    for name, value in fixed.items():
        _check_param_name(name, "fixed", where)
        _check_not_numeric_string(value, f"fixed.{name}", where)
        fixed_params[name] = value

    searched: dict[str, BaseDistribution] = {}
    for name, spec in searched_specs.items():
        _check_param_name(name, "searched", where)
        searched[name] = _parse_distribution(spec, f"searched.{name}", where)

    for name in searched:
        if name in fixed_params:
            _fail(
                where,
                f"searched.{name}",
                "also set in `fixed`; a parameter is either fixed or searched, not both",
            )

    for section, names in (("fixed", fixed_params), ("searched", searched)):
        for name in names:
            if reserved_params is not None and name in reserved_params:
                _fail(
                    where,
                    f"{section}.{name}",
                    f"must not be in a search space ({reserved_params[name]})",
                )
            if accepted_params is not None and name not in accepted_params:
                message = _not_accepted(name, accepted_params, estimator_name)
                _fail(where, f"{section}.{name}", message)

    return SearchSpace(
        family=family,
        path=path,
        fixed=MappingProxyType(fixed_params),
        searched=MappingProxyType(searched),
    )


# --- reading ---------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_strict_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            is_duplicate = key in seen
        except TypeError:  # An unhashable key; construct_mapping reports it below.
            continue
        if is_duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {_show(key)}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_strict_mapping
)


def _display_path(path: Path) -> str:
    """Return ``path`` relative to the project root when it is under it, else as given."""
    absolute = Path(os.path.abspath(path))
    for root in (PROJECT_ROOT, Path(os.path.abspath(PROJECT_ROOT))):
        try:
            return absolute.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(path)


def _read_yaml(path: Path, where: str, family: str) -> Any:
    if not path.exists():
        raise SweepError(f"{where}: search space file for family {family!r} not found")
    if not path.is_file():
        raise SweepError(f"{where}: search space path for family {family!r} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"{where}: cannot read the search space file ({exc})") from exc
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SweepError(f"{where}: malformed YAML{_yaml_error_detail(exc)}") from exc


def _yaml_error_detail(exc: yaml.YAMLError) -> str:
    # MarkedYAMLError carries 0-based marks; editors count lines and columns from 1.
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    location = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    if problem:
        return f"{location}: {problem}"
    return f"{location}: {' '.join(str(exc).split())}"


# --- structure -------------------------------------------------------------------------------


def _split_top_level(document: Any, where: str) -> tuple[Mapping[Any, Any], Mapping[Any, Any]]:
    if document is None:
        raise SweepError(
            f"{where}: the file is empty; expected a mapping with `searched` "
            "(and optionally `fixed`)"
        )
    if not isinstance(document, dict):
        raise SweepError(
            f"{where}: the top level must be a mapping with `searched` (and optionally `fixed`), "
            f"but got {_describe(document)}"
        )
    for key in document:
        if key not in _TOP_LEVEL_KEYS:
            allowed = ", ".join(_TOP_LEVEL_KEYS)
            _fail(where, _segment(key), f"unknown top-level key; allowed: {allowed}")

    # `fixed:` with every entry commented out reads as null: treat it as no fixed parameters.
    fixed = document.get("fixed")
    if fixed is None:
        fixed = {}
    if not isinstance(fixed, dict):
        _fail(where, "fixed", f"must be a mapping, but got {_describe(fixed)}")

    if "searched" not in document:
        raise SweepError(
            f"{where}: searched: is required (a non-empty mapping of parameter name -> "
            "distribution spec)"
        )
    searched = document["searched"]
    if not isinstance(searched, dict) or not searched:
        _fail(where, "searched", f"must be a non-empty mapping, but got {_describe(searched)}")
    return fixed, searched


def _check_param_name(name: Any, section: str, where: str) -> None:
    if not isinstance(name, str):
        _fail(
            where,
            f"{section}.{_segment(name)}",
            f"a parameter name must be a string, but got {_describe(name)}",
        )


def _not_accepted(
    name: str, accepted_params: Collection[str], estimator_name: str | None
) -> str:
    if estimator_name is not None:
        message = f"not a parameter of {estimator_name} (see its get_params())"
    else:
        message = "not an accepted parameter"
    close = difflib.get_close_matches(name, sorted(accepted_params), n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message


# --- distributions ---------------------------------------------------------------------------


def _parse_distribution(spec: Any, key: str, where: str) -> BaseDistribution:
    if not isinstance(spec, dict):
        _fail(
            where,
            key,
            "a distribution spec must be a mapping such as {type: int, low: 1, high: 10}, "
            f"but got {_describe(spec)}",
        )
    if "type" not in spec:
        _fail(where, key, f"missing required key `type` (one of: {', '.join(_TYPES)})")
    kind = spec["type"]
    if not isinstance(kind, str) or kind not in _TYPES:
        types = ", ".join(_TYPES)
        _fail(where, f"{key}.type", f"must be one of {types}, but got {_describe(kind)}")

    allowed = _KEYS_BY_TYPE[kind]
    for spec_key in spec:
        if spec_key in allowed:
            continue
        if spec_key in _ALL_SPEC_KEYS:
            owners = [name for name, keys in _KEYS_BY_TYPE.items() if spec_key in keys]
            _fail(
                where,
                f"{key}.{spec_key}",
                f"not allowed for type {kind} (only for type {' and '.join(owners)})",
            )
        _fail(
            where,
            f"{key}.{_segment(spec_key)}",
            f"unknown key; allowed for type {kind}: {', '.join(allowed)}",
        )

    if kind == "categorical":
        return _parse_categorical(spec, key, where)
    return _parse_numeric(spec, kind, key, where)


def _parse_numeric(spec: Mapping[str, Any], kind: str, key: str, where: str) -> BaseDistribution:
    for bound in ("low", "high"):
        if bound not in spec:
            _fail(where, key, f"missing required key `{bound}` (type {kind} needs low and high)")
    low = _number(spec["low"], kind, f"{key}.low", where)
    high = _number(spec["high"], kind, f"{key}.high", where)

    log = spec.get("log", False)
    if not isinstance(log, bool):
        _fail(where, f"{key}.log", f"must be true or false, but got {_describe(log)}")

    step: int | float | None = None
    if "step" in spec:
        step = _number(spec["step"], kind, f"{key}.step", where)

    if low > high:
        _fail(where, key, f"`low <= high` must hold, but got (low={low!r}, high={high!r})")
    if log and step is not None:
        # Optuna forbids step with log for floats and any step but 1 for ints; we reject the
        # combination outright so that the file says what is sampled.
        _fail(
            where,
            key,
            f"`step` is not supported when `log` is true, but got (log=true, step={step!r})",
        )
    # Optuna's rule per type: a log-scaled int range starts at 1, a float one above 0.
    if log and kind == "int" and low < 1:
        _fail(where, f"{key}.low", f"`low >= 1` must hold for `log: true`, but got low={low}")
    if log and kind == "float" and low <= 0:
        _fail(where, f"{key}.low", f"`low > 0` must hold for `log: true`, but got low={low!r}")
    if step is not None:
        if step <= 0:
            _fail(where, f"{key}.step", f"`step > 0` must hold, but got step={step!r}")
        # Optuna silently lowers `high` to the last point on the grid; a range whose end cannot
        # be sampled is almost always a typo, so say so. Decimal of the repr avoids float noise
        # (0.3 - 0.1 is not a multiple of 0.1 in binary floating point), as Optuna does.
        if not _on_grid(low, high, step):
            _fail(
                where,
                key,
                "`high - low` must be a multiple of `step`, but got "
                f"(low={low!r}, high={high!r}, step={step!r})",
            )

    try:
        if kind == "int":
            return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
        return FloatDistribution(
            float(low), float(high), log=log, step=None if step is None else float(step)
        )
    except ValueError as exc:  # Optuna's own checks, should it grow new ones.
        _fail(where, key, str(exc))


def _number(value: Any, kind: str, key: str, where: str) -> int | float:
    """Return ``value`` if it is a finite number (an integer for type int), else fail."""
    expected = "an integer for type int" if kind == "int" else "a number"
    if isinstance(value, str):
        hint = _exponent_hint(value, kind)
        _fail(where, key, f"must be {expected}, but got {_describe(value)}{hint}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(where, key, f"must be {expected}, but got {_describe(value)}")
    if kind == "int" and not isinstance(value, int):
        _fail(where, key, f"must be an integer for type int, but got {_describe(value)}")
    if not math.isfinite(value):
        _fail(where, key, f"must be finite, but got {_show(value)}")
    return value


def _exponent_hint(text: str, kind: str) -> str:
    """How to write ``text`` so that PyYAML reads a number; ``""`` if it is no exponent form.

    ``kind`` is ``"int"``, ``"float"``, or ``"any"`` for a fixed value, whose type the file
    does not say: an integral value then gets both spellings.
    """
    match = _EXPONENT_STRING.match(text.strip())
    if match is None:
        return ""
    sign, whole, fraction, exponent_sign, exponent = match.groups()
    as_float = f"{sign}{whole}.{fraction or '0'}e{exponent_sign or '+'}{exponent}"
    try:
        number = Decimal(text.strip())
    except InvalidOperation:  # pragma: no cover - the regex only matches valid numbers
        return ""
    integral = number == number.to_integral_value()
    if kind == "int":
        if not integral:
            return ""
        suggestion = f"`{int(number)}`"
    elif kind == "any" and integral:
        suggestion = f"`{as_float}`, or `{int(number)}` for an integer"
    else:
        suggestion = f"`{as_float}`"
    return (
        f" (PyYAML reads `{text}` as a string: a YAML 1.1 float needs a dot and a signed "
        f"exponent; write {suggestion})"
    )


def _check_not_numeric_string(value: Any, key: str, where: str) -> None:
    """Fail for a string that reads as a number, such as ``1e-3`` (a string to PyYAML).

    Fixed values (and categorical choices) reach the estimator as written, so such a string
    would be passed on as ``'1e-3'`` and fail, or worse be accepted, at fit time in every trial.
    """
    if not isinstance(value, str):
        return
    try:
        number = float(value)
    except ValueError:
        return
    hint = _exponent_hint(value, "any")
    if not hint and not math.isfinite(number):
        spelled = ".nan" if math.isnan(number) else ("-.inf" if number < 0 else ".inf")
        hint = f" (PyYAML reads `{value}` as a string: YAML 1.1 spells it `{spelled}`)"
    if not hint:
        hint = " (write the number without quotes)"
    _fail(where, key, f"must be a number, but got {_describe(value)}{hint}")


def _on_grid(low: int | float, high: int | float, step: int | float) -> bool:
    return (Decimal(repr(high)) - Decimal(repr(low))) % Decimal(repr(step)) == 0


def _parse_categorical(spec: Mapping[str, Any], key: str, where: str) -> BaseDistribution:
    if "choices" not in spec:
        _fail(
            where,
            key,
            "missing required key `choices` (type categorical needs a non-empty list of choices)",
        )
    choices = spec["choices"]
    if not isinstance(choices, list) or not choices:
        _fail(where, f"{key}.choices", f"must be a non-empty list, but got {_describe(choices)}")
    for index, choice in enumerate(choices):
        _check_not_numeric_string(choice, f"{key}.choices[{index}]", where)
        if choice is not None and not isinstance(choice, (bool, int, float, str)):
            # Optuna only warns, but other types do not survive its storages or MLflow params.
            _fail(
                where,
                f"{key}.choices[{index}]",
                "a choice must be null, a bool, an int, a float or a string, "
                f"but got {_describe(choice)}",
            )
        for earlier_index, earlier in enumerate(choices[:index]):
            # Python equality, because Optuna maps values back to choices with it: 1, 1.0 and
            # true are the same choice to Optuna.
            if _same_choice(choice, earlier):
                _fail(
                    where,
                    f"{key}.choices[{index}]",
                    f"choices must be distinct, but choices[{index}]={_show(choice)} equals "
                    f"choices[{earlier_index}]={_show(earlier)}",
                )
    try:
        return CategoricalDistribution(choices)
    except ValueError as exc:  # pragma: no cover - our checks cover Optuna's
        _fail(where, key, str(exc))


def _same_choice(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


# --- messages --------------------------------------------------------------------------------


def _fail(where: str, key: str, message: str) -> NoReturn:
    raise SweepError(f"{where}: {key}: {message}")


def _segment(key: Any) -> str:
    """Spell a mapping key as one segment of a key path such as ``searched.max_depth.low``."""
    return key if isinstance(key, str) else _show(key)


def _show(value: Any) -> str:
    """Spell a YAML value the way the user wrote it (null/true/false), shortened if long."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(value)
    if len(text) > _MAX_SHOWN_CHARS:
        text = text[: _MAX_SHOWN_CHARS - 3] + "..."
    return text


def _describe(value: Any) -> str:
    """Name the kind of a YAML value along with the value, for 'but got ...' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the bool {_show(value)}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, (int, float)):
        return f"the number {_show(value)}"
    if isinstance(value, list):
        return f"a list {_show(value)}" if value else "an empty list"
    if isinstance(value, dict):
        return f"a mapping {_show(value)}" if value else "an empty mapping"
    return f"a {type(value).__name__} {_show(value)}"
