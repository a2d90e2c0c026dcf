"""The search space of `seq2seq tune`: config keys, each with the values a trial may take (a range of integers or
numbers, or a list of choices), read from a YAML file or the default one, and checked against the config before any
trial runs, so that every trial's config is valid by construction.

The file maps each dotted key to one dimension:

    model.hidden_size: {type: int, low: 128, high: 512, step: 64}
    train.lr: {type: float, low: 1e-4, high: 3e-3, log: true}
    model.attention: {type: categorical, choices: [bahdanau, luong]}
    size: {type: int, low: 128, high: 512, step: 64, sets: {model.hidden_size: 1, model.emb_size: 0.5}}

A knob (a name with no dot, and `sets`) sets several config keys from one value, each the value times its factor
(rounded for an integer knob): one dimension where two would leave the sampler a space twice as large to learn.

The config says what is valid (config.py holds every key, type and range): a dimension is valid when the config
accepts its extreme values (low and high: the config's checks are ranges, so all between pass too) or each choice.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from seq2seq.config import SECTIONS, load_config, read_yaml
from seq2seq.errors import ConfigError

KINDS = ("int", "float", "categorical")
FIELDS = {"int": ("type", "low", "high", "step", "log", "sets"), "float": ("type", "low", "high", "step", "log", "sets"), "categorical": ("type", "choices")}
# Set by the tuner for every trial (run_dir, max_time, the validations at its rungs) or the study's objective itself
# (metric): not to be searched.
TUNER_KEYS = ("train.run_dir", "train.max_time", "train.metric", "train.valid_every", "train.valid_every_minutes")


@dataclass(frozen=True)
class Dimension:
    """One config key and the values a trial may give it: `low`..`high` (int or float; `step`, `log`) or `choices`;
    or a knob (`sets`: the config keys it sets, each to the value times its factor)."""

    key: str  # "model.hidden_size", or a knob's name ("size")
    kind: str  # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    sets: tuple[tuple[str, float], ...] = ()  # a knob's config keys and factors: (("model.hidden_size", 1.0), ...)

    def settings(self, value: Any) -> dict[str, Any]:
        """The config keys a value of this dimension sets: its own key, or a knob's keys."""
        if not self.sets:
            return {self.key: value}
        return {key: int(round(value * factor)) if self.kind == "int" else value * factor for key, factor in self.sets}

    def extremes(self) -> tuple[Any, ...]:
        """The values whose validity implies every value's: the bounds of a range, or each choice."""
        return self.choices if self.kind == "categorical" else (self.low, self.high)

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial (its sampler picks it)."""
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.key} in {{{', '.join(str(c) for c in self.choices)}}}"
        extra = (f", step {self.step}" if self.step else "") + (", log" if self.log else "")
        knob = "" if not self.sets else " (" + ", ".join(f"{k} = {self.key}" + ("" if f == 1 else f" x {f:g}") for k, f in self.sets) + ")"
        return f"{self.key} in [{self.low:g}, {self.high:g}{extra}]{knob}"


def has_key(section: str, key: str) -> bool:
    """Does this version's config have `section.key`? (The default space reaches for keys newer than some configs.)"""
    return section in SECTIONS and key in {f.name for f in dataclasses.fields(SECTIONS[section])}


def default_space() -> list[Dimension]:
    """The space searched without --space: the five settings that move a score most in a few minutes of training.

    The learning rate (log scale); one size knob for the hidden and embedding sizes together (embedding = half the
    hidden size); dropout; label smoothing; the batch (tokens, log scale). Everything else stays the config's own and is
    not searched: the attention, the schedule and its warmup, the layers, the weight averaging (the tuner turns
    train.ema_decay on at 0.999 where the config has it off, so that each rung scores the better of the raw and the
    averaged weights), clipping, the data. A few dozen trials an hour cannot learn more dimensions than these:
    trials needed grow fast with each one (issue 34: 9 dimensions gave TPE about 7 informed trials an hour)."""
    return [
        Dimension("train.lr", "float", 1e-4, 3e-3, log=True),
        Dimension("size", "int", 128, 768, step=64, sets=(("model.hidden_size", 1.0), ("model.emb_size", 0.5))),
        Dimension("model.dropout", "float", 0.0, 0.5),
        Dimension("train.label_smoothing", "float", 0.0, 0.2),
        Dimension("train.max_tokens", "int", 1000, 8000, log=True),
    ]


def expand(space: Sequence[Dimension], params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config settings from its parameters (a knob's value becomes the keys it sets); a parameter this space
    does not name (a study begun with another space) is kept where it is a config key."""
    dims = {d.key: d for d in space}
    settings: dict[str, Any] = {}
    for name, value in params.items():
        if name in dims:
            settings.update(dims[name].settings(value))
        elif "." in name:
            settings[name] = value
    return settings


def read_space(path: Path) -> list[Dimension]:
    """The dimensions of a space file (see the module's docstring), their form checked; ConfigError names the file."""
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of config keys to dimensions, e.g. train.lr: {{type: float, low: 1e-4, high: 3e-3, log: true}}")
    return [parse_dimension(str(key), spec, f"{path}: {key}") for key, spec in raw.items()]


def _number(spec: Mapping[str, Any], name: str, kind: str, where: str) -> Any:
    value = spec.get(name)
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: `{name}` must be a number, got {value!r}")
    if kind == "int":
        if value != int(value):
            raise ConfigError(f"{where}: `{name}` must be an integer for type int, got {value!r}")
        return int(value)
    return float(value)


def parse_dimension(key: str, spec: Any, where: str) -> Dimension:
    """One dimension from its mapping, e.g. {type: int, low: 128, high: 512, step: 64}."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping such as {{type: int, low: 128, high: 512}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{where}: `type` must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = sorted(set(spec) - set(FIELDS[kind]))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} for type {kind} (valid: {', '.join(FIELDS[kind])})")
    if kind == "categorical":
        values = spec.get("choices")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: `choices` must be a non-empty list")
        if any(isinstance(v, (list, dict)) for v in values):
            raise ConfigError(f"{where}: each choice must be a single value (a string, number, true/false or null)")
        return Dimension(key, kind, choices=tuple(values))
    low, high = _number(spec, "low", kind, where), _number(spec, "high", kind, where)
    step = _number(spec, "step", kind, where) if spec.get("step") is not None else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: `log` must be true or false, got {log!r}")
    if low > high:
        raise ConfigError(f"{where}: `low` ({low}) is above `high` ({high})")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: `step` must be positive, got {step}")
    if log and (low <= 0 or (step is not None and step != 1)):
        raise ConfigError(f"{where}: a log scale needs `low` > 0 and no `step`")
    return Dimension(key, kind, low, high, step, log, sets=parse_sets(spec.get("sets"), key, where))


def parse_sets(sets: Any, key: str, where: str) -> tuple[tuple[str, float], ...]:
    """A knob's `sets`: a mapping of config keys to positive factors; a knob's name has no dot, a key's one."""
    if sets is None:
        if "." not in key:
            raise ConfigError(f"{where}: a config key is section.key, e.g. model.hidden_size (or a knob with `sets`)")
        return ()
    if "." in key:
        raise ConfigError(f"{where}: a knob with `sets` is named without a dot (e.g. size), not like a config key")
    if not isinstance(sets, dict) or not sets:
        raise ConfigError(f"{where}: `sets` must map config keys to factors, e.g. {{model.hidden_size: 1, model.emb_size: 0.5}}")
    factors = []
    for target, factor in sets.items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
            raise ConfigError(f"{where}: `sets`: {target}: the factor must be a number above 0, got {factor!r}")
        factors.append((str(target), float(factor)))
    return tuple(factors)


def as_overrides(settings: Mapping[str, Any]) -> list[str]:
    """`--set` strings for a trial's settings. JSON is YAML: "luong" stays a string, 1e-05 a number (config.py reads
    YAML 1.1's dotless exponent as one), null and true/false what they say."""
    return [f"{key}={json.dumps(value)}" for key, value in settings.items()]


def check_space(space: Sequence[Dimension], config: Path, overrides: Sequence[str], where: str) -> None:
    """Refuse a space a trial could fail on: the tuner's own keys, and any key or extreme value the config refuses
    (checked by loading the config with it, so that config.py's own message names the problem)."""
    keys = [key for d in space for key in (d.key, *(k for k, _ in d.sets))]
    for d in space:
        for key in [d.key] if not d.sets else [k for k, _ in d.sets]:
            if key.count(".") != 1:
                raise ConfigError(f"{where}: {key}: a config key is section.key, e.g. model.hidden_size")
            if key in TUNER_KEYS:
                raise ConfigError(f"{where}: {key} is set by `seq2seq tune` itself and cannot be searched")
        for key in (d.key, *(k for k, _ in d.sets)):
            if keys.count(key) > 1:
                raise ConfigError(f"{where}: {key} is given twice")
        for value in d.extremes():
            try:
                load_config(config, [*overrides, *as_overrides(d.settings(value))])
            except ConfigError as e:
                message = str(e).removeprefix("--set ")
                named = any(message.startswith(f"{key}: ") for key in d.settings(value))  # config.py named the key
                raise ConfigError(f"{where}: {message}" if named else f"{where}: {d.key}: {message}") from None
