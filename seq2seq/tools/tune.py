"""`seq2seq tune`: a hyperparameter search on Optuna (the `tune` extra). Its TPE sampler proposes each trial's
settings from the trials so far; its successive-halving pruner stops a trial whose best score after some minutes of
training is not among the best third of the trials that got that far (rungs at 1/9 and 1/3 of a trial's minutes).

Each trial is an ordinary run directory, DIR/trial-NNNN (tools/tune_trial). The study lives in DIR/study.journal
(Optuna's journal file) or in the database of --storage, so the same command again continues it, and several
machines given one --storage run trials of one study. A trial left running by a tuner that was killed (its process
is gone from this machine) is marked failed and its settings are queued to run first. At the end: a table of the
trials, DIR/best.yaml (the base config with the best trial's settings, ready for `seq2seq train`) and DIR/trials.png.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from seq2seq.config import Config, dump_config, load_config
from seq2seq.errors import ConfigError, install_hint
from seq2seq.files import atomic_write_text
from seq2seq.tools.tune_space import Dimension, as_overrides, check_space, default_space, read_space
from seq2seq.tools.tune_trial import Outcome, run_trial, train_command
from seq2seq.training.rundir import ensure_dir
from seq2seq.training.schedule import LOWER_IS_BETTER

log = logging.getLogger("seq2seq")

STUDY_FILE, BEST_FILE, PLOT_FILE, LOG_FILE = "study.journal", "best.yaml", "trials.png", "tune.log"
REDUCTION_FACTOR = 3  # successive halving keeps the best third at each rung
N_STARTUP_TRIALS = 5  # random settings before TPE models the results (Optuna's 10 would fill a whole small budget)


@dataclass(frozen=True)
class TuneOptions:
    """What `seq2seq tune` was asked (minutes are wall-clock for the budget, of training for a trial)."""

    config: Path
    overrides: tuple[str, ...]
    budget: float
    trial_minutes: float | None = None  # None: default_trial_minutes(budget)
    space: Path | None = None  # None: tune_space.default_space()
    storage: str | None = None  # None: DIR/study.journal
    out: Path | None = None  # None: runs/<config stem>-tune


@dataclass(frozen=True)
class TuneResult:
    out: Path
    table: str
    best: Path | None  # best.yaml, None while no trial has completed
    plot: Path | None  # trials.png, None without matplotlib


def default_trial_minutes(budget: float) -> float:
    """A trial's minutes of training: an eighth of the budget, within 2 to 10 minutes, and never above the budget."""
    return min(budget, max(2.0, min(10.0, budget / 8)))


def default_out(config: Path) -> Path:
    return Path("runs") / f"{config.stem}-tune"


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"tune needs Optuna, which is not installed: {install_hint('tune')}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial replaces Optuna's
    return optuna


def open_storage(optuna: Any, url: str | None, out: Path) -> Any:
    """The study's storage: the journal file in `out`, or Optuna's RDB storage at an SQLAlchemy URL."""
    if url is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        make_out_dir(out)
        try:
            return JournalStorage(JournalFileBackend(str(out / STUDY_FILE)))
        except OSError as e:
            raise ConfigError(f"--out: cannot open {out / STUDY_FILE} ({e.strerror})") from None
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return optuna.storages.RDBStorage(url)
    # A URL that names no database, a driver not installed, a server or file that cannot be reached: one line each.
    except (SQLAlchemyError, ImportError, ValueError, OSError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--storage {url}: cannot open the storage: {reason}") from None


def make_out_dir(out: Path) -> None:
    try:
        ensure_dir(out)
    except ConfigError as e:
        raise ConfigError(str(e).replace("train.run_dir", "--out")) from None


def worker_id() -> str:
    """This tuner, as its trials record it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def open_study(optuna: Any, storage: Any, name: str, metric: str, seed: int, trial_seconds: float) -> Any:
    """Create the study or load it, checking it optimizes the same metric; a TPE sampler and successive halving."""
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=max(1, int(trial_seconds / REDUCTION_FACTOR**2)), reduction_factor=REDUCTION_FACTOR
    )
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, pruner=pruner, load_if_exists=True)
    known = study.user_attrs.get("metric")
    if known is None:
        study.set_user_attr("metric", metric)
    elif known != metric:
        raise ConfigError(f"the study {name!r} optimizes val {known}, this config's train.metric is {metric}: use another --out")
    # Seeded from train.seed and the trials so far: a continued study does not draw its first settings again.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=N_STARTUP_TRIALS)
    return study


def recover_orphans(optuna: Any, study: Any) -> list[int]:
    """Trials left running by a tuner of this machine that is gone: marked failed, their settings queued again."""
    host, orphans = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        their_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if their_host != host or not pid.isdigit() or (int(pid) != os.getpid() and process_alive(int(pid))):
            continue
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        orphans.append(trial.number)
    return orphans


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def tune(options: TuneOptions) -> TuneResult:
    """Run trials until the budget is spent; return the table of all the study's trials and the files written."""
    optuna = import_optuna()
    minutes = options.trial_minutes if options.trial_minutes is not None else default_trial_minutes(options.budget)
    if options.budget <= 0 or minutes <= 0:
        raise ConfigError("--budget and --trial-minutes: minutes must be more than 0")
    if minutes > options.budget:
        raise ConfigError(f"--trial-minutes {minutes:g} is more than --budget {options.budget:g}: no trial could finish")
    options = replace(options, trial_minutes=minutes, out=options.out or default_out(options.config))
    assert options.out is not None
    cfg = load_config(options.config, options.overrides)
    space, where = (read_space(options.space), str(options.space)) if options.space else (default_space(), "the default space")
    check_space(space, options.config, options.overrides, where)
    storage = open_storage(optuna, options.storage, options.out)  # a database's before DIR is made: it may fail
    make_out_dir(options.out)
    seed = cfg.train.seed + (zlib.crc32(worker_id().encode()) % 10_000 if options.storage else 0)  # machines differ
    study = open_study(optuna, storage, options.out.resolve().name, cfg.train.metric, seed, minutes * 60)
    if not study.trials and any(options.out.glob("trial-*")):
        raise ConfigError(f"--out {options.out} holds trial directories but no study: use another --out")
    from seq2seq.training.logs import attach_log_file, setup_logging

    setup_logging()
    attach_log_file(options.out / LOG_FILE)
    for number in recover_orphans(optuna, study):
        log.warning("trial %d was left running by a tuner that is gone: marked failed, its settings run again", number)
    log.info("tuning %s for %g min, trials of %g min of training; %s; study %s", options.config, options.budget, minutes,
             "; ".join(d.describe() for d in space), options.storage or options.out / STUDY_FILE)
    run_trials(optuna, study, options, space, cfg.train.metric)
    return finish(study, options, cfg)


def run_trials(optuna: Any, study: Any, options: TuneOptions, space: Sequence[Dimension], metric: str) -> None:
    """Start trials while the next one can finish in the budget: a trial's minutes plus the longest start-up and
    final validation seen so far in this command."""
    assert options.out is not None and options.trial_minutes is not None  # resolved by tune()
    deadline, overhead, minutes = time.monotonic() + options.budget * 60, 0.0, options.trial_minutes
    while True:
        left = deadline - time.monotonic()
        if left < minutes * 60 + overhead:
            log.info("budget: %.2f min left, a trial takes about %.2f: no more trials", left / 60, (minutes * 60 + overhead) / 60)
            break
        trial = study.ask()
        trial.set_user_attr("worker", worker_id())
        settings = {d.key: d.suggest(trial) for d in space}
        run_dir = options.out / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        command = train_command(options.config, options.overrides, settings, run_dir, minutes)
        try:
            outcome = run_trial(trial, command, run_dir, metric, minutes)
        except KeyboardInterrupt:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            log.warning("interrupted: trial %d stopped (%s); its settings run first when the study continues", trial.number, run_dir)
            raise
        record(optuna, study, trial, outcome)
        log.info("trial %d: %s: %s", trial.number, format_settings(settings), describe_outcome(outcome, metric))
        overhead = max(overhead, outcome.wall - outcome.seconds)


def record(optuna: Any, study: Any, trial: Any, outcome: Outcome) -> None:
    """Tell the study how the trial ended; its figures go into the trial's user attributes for the table."""
    figures = {"best": outcome.value, "minutes": outcome.seconds / 60, "updates": outcome.updates, "error": outcome.error,
               "pruned_at": None if outcome.pruned_at is None else outcome.pruned_at / 60}
    for key, value in figures.items():
        trial.set_user_attr(key, value)
    state = optuna.trial.TrialState
    if outcome.state == "complete":
        study.tell(trial, outcome.value)
    else:  # a pruned trial's value is its last report, the best it had reached
        study.tell(trial, state=state.PRUNED if outcome.state == "pruned" else state.FAIL)


def format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_settings(settings: dict[str, Any]) -> str:
    return " ".join(f"{key}={format_value(value)}" for key, value in settings.items())


def describe_outcome(outcome: Outcome, metric: str) -> str:
    from seq2seq.training.validate import metric_label

    score = "no score" if outcome.value is None else f"val {metric_label(metric)} {outcome.value:.2f}"
    figures = f"{score} in {outcome.seconds / 60:.2f} min, {outcome.updates} updates"
    if outcome.state == "pruned":
        return f"{figures}, pruned at {(outcome.pruned_at or 0) / 60:.2f} min"
    return f"{figures}, failed: {outcome.error}" if outcome.state == "failed" else figures


def finish(study: Any, options: TuneOptions, cfg: Config) -> TuneResult:
    """The table of the study's trials, best.yaml and trials.png."""
    from seq2seq.tools.tune_report import plot_study, trials_table
    from seq2seq.training.validate import metric_label

    assert options.out is not None
    out, metric = options.out, cfg.train.metric
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    best = study.best_trial if any(t.state.name == "COMPLETE" for t in trials) else None
    best_path = None
    if best is not None:
        best_cfg = load_config(options.config, [*options.overrides, *as_overrides(best.params)])
        best_path = out / BEST_FILE
        atomic_write_text(best_path, best_yaml(best_cfg, best.number, f"val {metric_label(metric)} {best.value:.2f}", options.config, out))
        log.info("best: trial %d, val %s %.2f: %s -> %s", best.number, metric_label(metric), best.value, format_settings(best.params), best_path)
    plot = plot_study(trials, metric, out / PLOT_FILE, f"{out.resolve().name}: {len(trials)} trials")
    return TuneResult(out, trials_table(trials, metric, None if best is None else best.number), best_path, plot)


def best_yaml(cfg: Config, number: int, score: str, config: Path, out: Path) -> str:
    """The base config with the best trial's settings; run_dir and max_time are the base config's, not the trial's."""
    head = (
        f"# seq2seq tune: {config} with the settings of trial {number} ({score}), the best of {out}.\n"
        f"# Train it with: seq2seq train --config {out / BEST_FILE}\n"
    )
    return head + dump_config(cfg)
