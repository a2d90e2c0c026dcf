"""`seq2seq tune`: a hyperparameter search on Optuna (the `tune` extra). The first trials take quasi-random settings
(Optuna's QMC sampler, a scrambled Sobol sequence), the rest multivariate TPE's, modelled on the trials so far. Every
trial validates by the clock at each ninth of its minutes (train.valid_every_minutes), so all trials are scored at
the same seconds of training; at the rungs, a ninth and a third of its minutes, successive halving stops a trial not
among the best third of the trials scored at that second (`goes_on`: no trial goes on for being the first there; a
trial alone at a rung waits, and its run is resumed when a later trial shows it among the best there).

Each trial is an ordinary run directory, DIR/trial-NNNN (tools/tune_trial). The study lives in DIR/study.journal
(Optuna's journal file) or in the database of --storage, so the same command again continues it, and several
machines given one --storage run trials of one study. A trial left running by a tuner that was killed (its process
is gone from this machine) is marked failed and its settings are queued to run first. At the end: a table of the
trials (each one's score at each rung), DIR/best.yaml (the base config with the best trial's settings and a run
directory of its own, ready for `seq2seq train`) and DIR/trials.png; runs/latest then names the best trial's run.
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
from seq2seq.model.checkpoint import DEFAULT_MODEL_FILE, record_default_model
from seq2seq.runfiles import RunFiles
from seq2seq.tools.tune_space import Dimension, as_overrides, check_space, default_space, expand, has_key, read_space
from seq2seq.tools.tune_trial import Outcome, Rungs, run_trial, train_command
from seq2seq.training.rundir import ensure_dir
from seq2seq.training.schedule import LOWER_IS_BETTER

log = logging.getLogger("seq2seq")

STUDY_FILE, BEST_FILE, PLOT_FILE, LOG_FILE = "study.journal", "best.yaml", "trials.png", "tune.log"
REDUCTION_FACTOR = 3  # successive halving keeps the best third at each rung
EMA_DECAY = 0.999  # trials of a config without the EMA get it, so that a rung scores the better of two weights
GUESSED_OVERHEAD_MIN = 0.5  # a trial's start-up and final validation, before a trial of this study measured them


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
    hint: str = ""  # the last line: how to train best.yaml, and where it goes


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


def open_study(optuna: Any, storage: Any, name: str, metric: str) -> Any:
    """Create the study or load it, checking it optimizes the same metric. No Optuna pruner: `goes_on` decides."""
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, pruner=optuna.pruners.NopPruner(), load_if_exists=True)
    known = study.user_attrs.get("metric")
    if known is None:
        study.set_user_attr("metric", metric)
    elif known != metric:
        raise ConfigError(f"the study {name!r} optimizes val {known}, this config's train.metric is {metric}: use another --out")
    return study


def goes_on(value: float, others: Sequence[float], lower_is_better: bool, factor: int = REDUCTION_FACTOR) -> bool:
    """Successive halving at a rung: does a trial scoring `value` go on, against the `others` scored at the same
    step? When it is among the best max(1, n // factor) of the n scores (its own included; a tie goes its way), and
    only then: a trial alone at a rung has beaten nobody and stops, parked (`next_parked` lets its run go on once
    another trial's score there shows it among the best). Optuna's SuccessiveHalvingPruner lets the first trial at
    a rung go on, so the first trial of every study ran to its end whatever it scored, and each of the next
    `factor - 1` went on by beating the trials before it alone."""
    if not others:
        return False
    better = sum(1 for other in others if (other < value if lower_is_better else other > value))
    return better < max(1, (len(others) + 1) // factor)


# Study user attributes (JSON: trial numbers as strings): the trials parked at a rung ({number: [step, value]}),
# and the trials whose run another trial continued ({number: the continuing trial's number}).
PARKED, CONTINUED = "parked", "continued"


def population(study: Any, number: int, step: int) -> list[float]:
    """The scores at `step` that trial `number` is judged against: every other trial's, whatever its state (pruned
    there, completed, running on another machine), but not a trial whose run another continued (its scores are the
    continuing trial's history, not a trial of their own)."""
    continued = study.user_attrs.get(CONTINUED, {})
    return [t.intermediate_values[step] for t in study.get_trials(deepcopy=False)
            if t.number != number and str(t.number) not in continued and step in t.intermediate_values]


class RungJudge:
    """The pruner of one trial: at `step` (milliseconds of training), stop it (True) unless it `goes_on` against
    the `population` there; `parked` says where it stopped alone."""

    def __init__(self, study: Any, number: int, lower_is_better: bool):
        self.study, self.number, self.lower_is_better = study, number, lower_is_better
        self.parked: tuple[int, float] | None = None

    def __call__(self, step: int, value: float) -> bool:
        others = population(self.study, self.number, step)
        if not others:
            self.parked = (step, value)
        return not goes_on(value, others, self.lower_is_better)


def next_parked(study: Any, lower_is_better: bool) -> tuple[Any, int] | None:
    """A parked trial that now goes on (and the index of the rung it waited at), its run's last.pt on this machine;
    a parked trial that other trials' scores at its rung now beat stays stopped for good."""
    parked = dict(study.user_attrs.get(PARKED, {}))
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    found = None
    for key, (step, value) in sorted(parked.items(), key=lambda kv: int(kv[0])):
        trial = trials.get(int(key))
        run_dir = Path(str(trial.user_attrs.get("run_dir"))) if trial is not None else None
        others = population(study, int(key), step)
        if trial is None or run_dir is None or not RunFiles(run_dir).last.is_file() or not others:
            continue
        if goes_on(value, others, lower_is_better):
            found = (trial, step)
            break
        del parked[key]  # beaten where it waited
    if parked != study.user_attrs.get(PARKED, {}):
        study.set_user_attr(PARKED, parked)
    return found


@dataclass(frozen=True)
class Plan:
    """What a budget buys: trials, of which the first `startup` quasi-random."""

    trials: int  # about: with the pruner stopping two of three at each rung
    full: int  # if every trial ran to its end
    overhead: float  # minutes of a trial's start-up and final validation (measured, or guessed)
    startup: int

    def describe(self, budget: float, minutes: float) -> str:
        return (f"the budget of {budget:g} min buys about {self.trials} trials of {minutes:g} min ({self.full} if none were "
                f"pruned; {self.overhead:.2f} min of start-up each); the first {self.startup} take quasi-random settings, "
                "then multivariate TPE")


def plan_trials(budget: float, minutes: float, rungs: Rungs, overhead: float | None, startup: int | None) -> Plan:
    """The trials a budget buys. Successive halving with rungs at marks 1 and 3 of 9 stops two of three trials at each,
    so in the long run 2/3 of the trials train a ninth of their minutes, 2/9 a third and 1/9 all of them: 7/27 of a
    trial's minutes each, plus the start-up. A third of them, 3 to 10, are the quasi-random start (fixed for the study
    when it begins)."""
    over = GUESSED_OVERHEAD_MIN if overhead is None else overhead
    share = (2 / 3) * rungs.at[0] / 9 + (2 / 9) * rungs.at[-1] / 9 + 1 / 9 if len(rungs.at) == 2 else 1.0
    trials = int(budget // (minutes * share + over))
    full = int(budget // (minutes + over))
    return Plan(trials, full, over, startup if startup is not None else min(10, max(3, round(trials / 3))))


def choose_sampler(optuna: Any, study: Any, seed: int, startup: int) -> Any:
    """The sampler of the next trial: QMC (scrambled Sobol, seeded: several machines draw one sequence; Optuna draws
    the very first trial at random, to learn the space) for the first `startup` trials, then multivariate TPE (the
    dimensions modelled together, not one by one), seeded from train.seed and the trials so far so that a continued
    study does not draw its first settings again."""
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if len(study.trials) < startup:
        return optuna.samplers.QMCSampler(scramble=True, seed=seed, warn_independent_sampling=False, warn_asynchronous_seeding=False)
    return optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=startup, multivariate=True)


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


@dataclass(frozen=True)
class Search:
    """What every trial of this command shares (a record for run_trials and finish)."""

    optuna: Any
    study: Any
    options: TuneOptions  # resolved: trial_minutes and out set
    space: Sequence[Dimension]
    overrides: tuple[str, ...]  # the user's --set keys and the tuner's fixed ones (train.ema_decay)
    cfg: Config  # the base config with `overrides`
    rungs: Rungs
    seed: int
    startup: int


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
    searched = {key for d in space for key in expand([d], {d.key: d.extremes()[0]})}
    fixed = (f"train.ema_decay={EMA_DECAY}",) if has_key("train", "ema_decay") and cfg.train.ema_decay == 0 and "train.ema_decay" not in searched else ()
    overrides = (*options.overrides, *fixed)
    storage = open_storage(optuna, options.storage, options.out)  # a database's before DIR is made: it may fail
    make_out_dir(options.out)
    seed = cfg.train.seed + (zlib.crc32(worker_id().encode()) % 10_000 if options.storage else 0)  # machines differ
    study = open_study(optuna, storage, options.out.resolve().name, cfg.train.metric)
    if not study.trials and any(options.out.glob("trial-*")):
        raise ConfigError(f"--out {options.out} holds trial directories but no study: use another --out")
    from seq2seq.training.logs import attach_log_file, setup_logging

    setup_logging()
    attach_log_file(options.out / LOG_FILE)
    for number in recover_orphans(optuna, study):
        log.warning("trial %d was left running by a tuner that is gone: marked failed, its settings run again", number)
    rungs = Rungs.for_minutes(minutes)
    overheads = [t.user_attrs["overhead"] for t in study.trials if isinstance(t.user_attrs.get("overhead"), (int, float))]
    plan = plan_trials(options.budget, minutes, rungs, max(overheads) / 60 if overheads else None, study.user_attrs.get("startup"))
    if "startup" not in study.user_attrs:
        study.set_user_attr("startup", plan.startup)
    log.info("tuning %s for %g min, trials of %g min of training; %s; study %s", options.config, options.budget, minutes,
             "; ".join(d.describe() for d in space), options.storage or options.out / STUDY_FILE)
    log.info("not searched, the config's own: %s%s", fixed_settings(cfg, options.config, searched),
             f"; train.ema_decay {EMA_DECAY}, not the config's 0, so that each rung scores the better of the raw and the "
             "averaged weights" if fixed else "")
    cfg = load_config(options.config, overrides)
    log.info("every trial validates every %.3g s of training, at the same seconds; the rungs at %s s stop a trial not "
             "among the best third there", rungs.interval, " and ".join(f"{s / 1000:.3g}" for s in rungs.steps))
    log.info("%s", plan.describe(options.budget, minutes))
    search = Search(optuna, study, options, space, overrides, cfg, rungs, seed, plan.startup)
    latest = DEFAULT_MODEL_FILE.read_text(encoding="utf-8") if DEFAULT_MODEL_FILE.is_file() else None
    try:
        run_trials(search)
    finally:  # every trial's run made itself the default model: the best trial's is, or the one before the study
        result = finish(search, latest)
    return result


def fixed_settings(cfg: Config, config: Path, searched: set[str]) -> str:
    """The settings a space of the `searched` keys leaves alone, as the config has them."""
    m, t = cfg.model, cfg.train
    named = [(("model.attention",), f"attention {m.attention}"), (("model.enc_layers", "model.dec_layers"), f"layers {m.enc_layers}/{m.dec_layers}"),
             (("train.schedule", "train.warmup_steps"), f"schedule {t.schedule} (warmup {t.warmup_steps})"),
             (("train.ema_decay",), f"ema_decay {t.ema_decay:g}"), (("train.clip_grad",), f"clip_grad {t.clip_grad:g}")]
    kept = [text for keys, text in named if not searched.intersection(keys)]
    return f"{', '.join(kept)} and every other key of {config}" if kept else f"every other key of {config}"


def run_trials(search: Search) -> None:
    """Start trials while the next one can finish in the budget: a trial's minutes plus the longest start-up and
    final validation seen so far in this command."""
    optuna, study, options = search.optuna, search.study, search.options
    assert options.out is not None and options.trial_minutes is not None  # resolved by tune()
    deadline, overhead, minutes = time.monotonic() + options.budget * 60, 0.0, options.trial_minutes
    metric = search.cfg.train.metric
    while True:
        left = deadline - time.monotonic()
        if left < minutes * 60 + overhead:
            log.info("budget: %.2f min left, a trial takes about %.2f: no more trials", left / 60, (minutes * 60 + overhead) / 60)
            break
        lower = metric in LOWER_IS_BETTER
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        parked = None if waiting else next_parked(study, lower)  # a queued retry first
        if parked is not None:
            study.enqueue_trial(parked[0].params, user_attrs={"continues": parked[0].number})
        study.sampler = choose_sampler(optuna, study, search.seed, search.startup)
        trial = study.ask()
        trial.set_user_attr("worker", worker_id())
        params = {d.key: d.suggest(trial) for d in search.space}
        settings = expand(search.space, params)
        continues = trial.user_attrs.get("continues")
        run_dir = options.out / f"trial-{trial.number:04d}"
        passed = 0  # rungs already passed by the run this trial continues
        if parked is not None and continues == parked[0].number:
            run_dir = Path(str(parked[0].user_attrs["run_dir"]))
            passed = [search.rungs.step(m) for m in search.rungs.at].index(parked[1]) + 1
            study.set_user_attr(PARKED, {k: v for k, v in study.user_attrs.get(PARKED, {}).items() if k != str(continues)})
            study.set_user_attr(CONTINUED, {**study.user_attrs.get(CONTINUED, {}), str(continues): trial.number})
            log.info("trial %d: trial %d's run goes on from where it waited alone (now among the best there)", trial.number, continues)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("settings", settings)
        trial.set_user_attr("rungs", list(search.rungs.steps))
        command = train_command(options.config, search.overrides, settings, run_dir, minutes, search.rungs)
        if passed:
            command.append("--resume")
        judge = RungJudge(study, trial.number, lower)
        try:
            outcome = run_trial(trial, command, run_dir, metric, search.rungs, judge, passed)
        except KeyboardInterrupt:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            log.warning("interrupted: trial %d stopped (%s); its settings run first when the study continues", trial.number, run_dir)
            raise
        if outcome.state == "pruned" and judge.parked is not None:  # alone at its rung: waits there for others
            study.set_user_attr(PARKED, {**study.user_attrs.get(PARKED, {}), str(trial.number): list(judge.parked)})
        record(optuna, study, trial, outcome)
        waits = ", alone there: it goes on if a later trial shows it among the best" if outcome.state == "pruned" and judge.parked else ""
        log.info("trial %d: %s: %s%s", trial.number, format_settings(params), describe_outcome(outcome, metric), waits)
        overhead = max(overhead, outcome.wall - outcome.seconds)


def record(optuna: Any, study: Any, trial: Any, outcome: Outcome) -> None:
    """Tell the study how the trial ended; its figures go into the trial's user attributes for the table."""
    figures = {"best": outcome.value, "minutes": outcome.seconds / 60, "updates": outcome.updates, "error": outcome.error,
               "pruned_at": None if outcome.pruned_at is None else outcome.pruned_at / 60, "overhead": outcome.wall - outcome.seconds}
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
    from seq2seq.metric import said

    score = "no score" if outcome.value is None else f"val {said(metric, outcome.value)}"
    figures = f"{score} in {outcome.seconds / 60:.2f} min, {outcome.updates} updates"
    if outcome.state == "pruned":
        return f"{figures}, pruned at {(outcome.pruned_at or 0) / 60:.2f} min"
    return f"{figures}, failed: {outcome.error}" if outcome.state == "failed" else figures


def best_run_dir(out: Path) -> Path:
    """Where best.yaml trains: a run directory of the study's own, beside DIR (not the base config's run, nor a
    `runs/best` that the next study's best.yaml would train into too)."""
    return out.parent / f"{out.name}-best"


def finish(search: Search, latest: str | None) -> TuneResult:
    """The table of the study's trials, best.yaml, trials.png, and runs/latest: the best trial's run, or as it was
    before the study when no trial completed (`latest`, its text then; None: there was none)."""
    from seq2seq.metric import said
    from seq2seq.tools.tune_report import plot_study, trials_table

    options, metric = search.options, search.cfg.train.metric
    assert options.out is not None
    out = options.out
    trials = sorted(search.study.get_trials(deepcopy=False), key=lambda t: t.number)
    best = search.study.best_trial if any(t.state.name == "COMPLETE" for t in trials) else None
    best_path, hint = None, f"no trial has completed yet: no {out / BEST_FILE}"
    if best is None:
        restore_default_model(latest)
    else:
        settings = best.user_attrs.get("settings") or expand(search.space, best.params)
        target = best_run_dir(out)
        best_cfg = load_config(options.config, [*search.overrides, *as_overrides({**settings, "train.run_dir": str(target)})])
        best_path = out / BEST_FILE
        score = f"val {said(metric, best.value)}"
        atomic_write_text(best_path, best_yaml(best_cfg, best.number, score, options.config, out, len(trials)))
        record_default_model(Path(best.user_attrs.get("run_dir", out / f"trial-{best.number:04d}")))
        log.info("runs/latest: trial %d's run %s, the best, is the model eval and translate use without --model",
                 best.number, best.user_attrs.get("run_dir"))
        hint = (f"best: trial {best.number}, {score}: {format_settings(best.params)} -> {best_path}; train it with: "
                f"seq2seq train --config {best_path} (into {target}, its train.run_dir)")
        log.info("%s", hint)
    plot = plot_study(trials, metric, out / PLOT_FILE, f"{out.resolve().name}: {len(trials)} trials", search.rungs.steps)
    notes = {int(k): ", alone: waits" for k in search.study.user_attrs.get(PARKED, {})}
    notes.update({int(k): f", alone: went on as {v}" for k, v in search.study.user_attrs.get(CONTINUED, {}).items()})
    table = trials_table(trials, metric, None if best is None else best.number, search.rungs.steps, notes)
    return TuneResult(out, table, best_path, plot, hint)


def restore_default_model(latest: str | None) -> None:
    """runs/latest as it was before the study: its trials' runs each made themselves the default model."""
    if latest is not None:
        atomic_write_text(DEFAULT_MODEL_FILE, latest)
    elif DEFAULT_MODEL_FILE.is_file():
        DEFAULT_MODEL_FILE.unlink()


def best_yaml(cfg: Config, number: int, score: str, config: Path, out: Path, trials: int) -> str:
    """The base config with the best trial's settings; max_time is the base config's, not the trial's, and run_dir
    the study's own (best_run_dir)."""
    head = (
        f"# seq2seq tune: the settings of trial {number} of {out} ({score}; the best of {trials} trials) on {config}.\n"
        f"# trial: {number}\n"
        f"# score: {score}\n"
        f"# Train it with: seq2seq train --config {out / BEST_FILE}   (into {cfg.train.run_dir}, its train.run_dir)\n"
    )
    return head + dump_config(cfg)
