"""The Python entry points beside the CLI, for notebooks and scripts:

    import seq2seq
    result = seq2seq.train("configs/demo.yaml", overrides=["train.epochs=1"])
    t = seq2seq.Translator.load(result.run_dir)
    t.translate(["I love you"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from seq2seq.config import Config, apply_overrides, config_from_dict, config_to_dict, load_config, replace
from seq2seq.errors import ConfigError
from seq2seq.training.rundir import default_run_dir
from seq2seq.training.trainer import TrainResult
from seq2seq.training.trainer import train as run_training


def as_config(config: Config | Mapping[str, Any] | str | Path, overrides: Sequence[str] = ()) -> Config:
    """A Config from a Config, a nested mapping (as in YAML) or a YAML file path; `overrides` as for --set."""
    if isinstance(config, (str, Path)):
        return load_config(config, overrides)
    if isinstance(config, Config):
        raw: Any = config_to_dict(config)
    elif isinstance(config, Mapping):
        raw = {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}
    else:
        raise ConfigError(f"expected a Config, a mapping or a YAML path, got {type(config).__name__}")
    return config_from_dict(apply_overrides(raw, overrides))


def train(
    config: Config | Mapping[str, Any] | str | Path,
    run_dir: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train a model as `seq2seq train` does; returns the run directory, the final progress and the best scores.

    `run_dir` defaults to train.run_dir, else runs/<YAML file stem> (runs/default for a Config or mapping).
    `init_from`: fine-tune this model (a run directory or a .pt), as `--init-from` does (sets train.init_from).
    """
    cfg = as_config(config, overrides)
    if init_from is not None:
        cfg = replace(cfg, "train", init_from=str(init_from))
    if run_dir is None:
        run_dir = default_run_dir(cfg, config if isinstance(config, (str, Path)) else None)
    return run_training(cfg, Path(run_dir), resume=resume, overwrite=overwrite, quiet=quiet)

