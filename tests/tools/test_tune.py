"""`seq2seq tune`: trials are ordinary runs trained in subprocesses, the study continues from its journal, best.yaml
trains; a bad space or storage is one line and exit 2; the pruner's decisions come from the run's metrics.jsonl and a
pruned run is stopped with SIGINT; a trial left running by a killed tuner runs again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import HAS_MATPLOTLIB, invoke, toy_pairs, write_corpus

optuna = pytest.importorskip("optuna")

SPACE = """\
model.hidden_size: {type: int, low: 16, high: 32, step: 16}
train.lr: {type: float, low: 3e-3, high: 2e-2, log: true}
model.attention: {type: categorical, choices: [bahdanau, luong]}
"""


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny config on 300 toy pairs validating every 10 updates, a space file, and the working directory there."""
    train = write_corpus(tmp_path / "data", "train", toy_pairs("train", 300))
    valid = write_corpus(tmp_path / "data", "val", toy_pairs("val", 30))
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(f"""\
        data: {{train: {train}, valid: {valid}, src_lang: en, tgt_lang: de}}
        model: {{emb_size: 16, hidden_size: 24, attention: luong, dropout: 0.0}}
        train: {{batch_size: 32, epochs: 50, lr: 0.01, seed: 3, valid_every: 10, num_threads: 1}}
        """), encoding="utf-8")
    (tmp_path / "space.yaml").write_text(SPACE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the trials' runs/latest
    return tmp_path


def tune_args(*extra: str) -> tuple[str, ...]:
    # 0.1 min of budget and trials of 0.05 min (3 s of training): the first trial starts, the next one could not finish
    return ("tune", "--config", "tiny.yaml", "--space", "space.yaml", "--out", "study", "--budget", "0.1", "--trial-minutes", "0.05", *extra)


def study_trials(directory: Path) -> list:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(directory / "study.journal")))
    return optuna.load_study(study_name=directory.name, storage=storage).trials


@pytest.fixture
def no_pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every trial goes on at its rungs (the rule is tested on its own below): trials of a few seconds complete."""
    from seq2seq.tools import tune

    monkeypatch.setattr(tune, "goes_on", lambda value, others, lower_is_better: True)


def test_trials_are_runs_the_study_continues_and_best_yaml_trains(work: Path, capsys, monkeypatch, no_pruning) -> None:
    from seq2seq.config import load_config
    from seq2seq.tools.info import describe
    from seq2seq.tools.tune_trial import Rungs

    code, out, err = invoke(capsys, monkeypatch, *tune_args())
    assert code == 0, err
    assert [t.number for t in study_trials(work / "study")] == [0]
    run = work / "study" / "trial-0000"
    assert describe(run / "best.pt")["step"] > 0  # an ordinary run directory: info reads it
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bleu" in r for r in records) and any("val_ema_bleu" in r for r in records)  # the EMA, turned on
    # validated by the clock, at the marks every trial shares (a ninth of 3 s), reported at their milliseconds
    rungs = Rungs.for_minutes(0.05)
    marks = [rungs.mark(r["elapsed"]) for r in records if "val_bleu" in r]
    assert marks == sorted(set(marks)) and marks[-1] >= 9
    trial = study_trials(work / "study")[0]
    assert set(trial.intermediate_values) == {rungs.step(m) for m in marks} and rungs.steps == (333, 1000)
    head = out.splitlines()[0].split()
    assert head[:4] == ["trial", "hidden_size", "lr", "attention"] and head[4:10] == ["at", "0.01", "min", "at", "0.02", "min"]
    assert "trial 0: model.hidden_size=" in err and "updates" in err
    assert err.index("buys about") < err.index("trial 0: ")  # the trials a budget buys, said before the first

    code, out, err = invoke(capsys, monkeypatch, *tune_args())  # the same command again continues the study
    assert code == 0, err
    assert [t.number for t in study_trials(work / "study")] == [0, 1]
    assert (work / "study" / "trial-0001" / "metrics.jsonl").exists()
    assert len(out.strip().splitlines()) == 3  # the table: head and both trials

    best = load_config(work / "study" / "best.yaml")
    best_trial = max((t for t in study_trials(work / "study") if t.value is not None), key=lambda t: t.value)
    assert (best.model.hidden_size, best.model.attention) == (best_trial.params["model.hidden_size"], best_trial.params["model.attention"])
    assert best.train.lr == pytest.approx(best_trial.params["train.lr"])
    assert best.train.max_time is None and best.train.valid_every_minutes is None  # the base config's, not the trial's
    header = (work / "study" / "best.yaml").read_text().splitlines()[:4]
    assert header[1:3] == [f"# trial: {best_trial.number}", f"# score: val BLEU {best_trial.value:.2f}"]
    # issue 32 item 6: best.yaml trains into a run directory of the study's own, and both hints say so
    assert best.train.run_dir == "study-best"
    assert "seq2seq train --config study/best.yaml   (into study-best, its train.run_dir)" in header[3]
    assert err.strip().splitlines()[-1].endswith("train it with: seq2seq train --config study/best.yaml (into study-best, its train.run_dir)")
    assert (work / "study" / "trials.png").exists() == HAS_MATPLOTLIB
    code, _, err = invoke(capsys, monkeypatch, "train", "--config", "study/best.yaml", "--set", "train.max_steps=3", "--quiet")
    assert code == 0, err
    assert (work / "study-best" / "best.pt").exists() and not (work / "runs" / "best").exists()


def test_runs_latest_names_the_best_trial_or_stays_as_it_was(work: Path, capsys, monkeypatch) -> None:
    """Issue 32 item 2: every trial's run made itself runs/latest, so a study left it at its last trial. A study with
    no completed trial leaves it as it was; one with completed trials points it at the best, whichever ran last."""
    from seq2seq.tools import tune

    (work / "runs").mkdir()
    (work / "runs" / "latest").write_text("/somewhere/my-model\n", encoding="utf-8")
    code, _, err = invoke(capsys, monkeypatch, *tune_args())  # trial 0 is alone at its first rung: it stops there
    assert code == 0, err
    assert [t.state.name for t in study_trials(work / "study")] == ["PRUNED"]
    assert (work / "runs" / "latest").read_text(encoding="utf-8") == "/somewhere/my-model\n"

    monkeypatch.setattr(tune, "goes_on", lambda value, others, lower_is_better: True)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="study", storage=JournalStorage(JournalFileBackend(str(work / "study" / "study.journal"))))
    study.enqueue_trial({"model.hidden_size": 32, "train.lr": 0.02, "model.attention": "luong"})
    study.enqueue_trial({"model.hidden_size": 16, "train.lr": 0.003, "model.attention": "luong"})
    for _ in range(2):
        code, _, err = invoke(capsys, monkeypatch, *tune_args())
        assert code == 0, err
    trials = study_trials(work / "study")
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert (work / "runs" / "latest").read_text(encoding="utf-8").strip() == str((work / best.user_attrs["run_dir"]).resolve())
    assert f"runs/latest: trial {best.number}'s run" in err


@pytest.mark.parametrize("space, says", [
    ("model.hiden_size: {type: int, low: 16, high: 32}\n", "space.yaml: model.hiden_size: unknown key (did you mean 'hidden_size'?)"),
    ("modle.hidden_size: {type: int, low: 16, high: 32}\n", "space.yaml: modle.hidden_size: unknown section (did you mean 'model'?)"),
    ("model.dropout: {type: float, low: 0.0, high: 1.5}\n", "space.yaml: model.dropout: must be <= 0.9, got 1.5"),
    ("model.hidden_size: {type: float, low: 16, high: 32}\n", "space.yaml: model.hidden_size: expected an integer, got 16.0"),
    ("model.attention: {type: categorical, choices: [luong, dot]}\n", "space.yaml: model.attention: 'dot' is not one of bahdanau, luong"),
    ("train.max_time: {type: float, low: 1, high: 2}\n", "train.max_time is set by `seq2seq tune` itself"),
])
def test_a_space_the_config_refuses_is_one_line_and_exit_2(work: Path, capsys, monkeypatch, space: str, says: str) -> None:
    (work / "space.yaml").write_text(space, encoding="utf-8")
    code, _, err = invoke(capsys, monkeypatch, *tune_args())
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert says in err
    assert not (work / "study").exists()  # refused before anything was written


@pytest.mark.parametrize("space, says", [
    ("model.hidden_size: {type: int, low: 16\n", "malformed YAML"),
    ("- model.hidden_size\n", "expected a mapping of config keys to dimensions"),
    ("model.hidden_size: 64\n", "expected a mapping such as"),
    ("model.hidden_size: {low: 16, high: 32}\n", "`type` must be one of int, float, categorical"),
    ("model.hidden_size: {type: int, low: 32, high: 16}\n", "`low` (32) is above `high` (16)"),
    ("model.hidden_size: {type: int, low: 16, high: 32, stpe: 16}\n", "unknown field 'stpe'"),
    ("train.lr: {type: float, low: 0, high: 0.1, log: true}\n", "a log scale needs `low` > 0"),
    ("model.attention: {type: categorical, choices: []}\n", "`choices` must be a non-empty list"),
])
def test_a_malformed_space_file_is_one_line_and_exit_2(work: Path, capsys, monkeypatch, space: str, says: str) -> None:
    (work / "space.yaml").write_text(space, encoding="utf-8")
    code, _, err = invoke(capsys, monkeypatch, *tune_args())
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert says in err and "space.yaml" in err


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-dir/sub/study.db", "nosuchdb://host/study", "not a url"])
def test_an_unreachable_storage_is_one_line_and_exit_2(work: Path, capsys, monkeypatch, url: str) -> None:
    code, _, err = invoke(capsys, monkeypatch, *tune_args("--storage", url))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: --storage {url}: cannot open the storage")


def test_trial_minutes_above_the_budget_is_one_line_and_exit_2(work: Path, capsys, monkeypatch) -> None:
    code, _, err = invoke(capsys, monkeypatch, "tune", "--config", "tiny.yaml", "--budget", "1", "--trial-minutes", "2")
    assert code == 2 and "--trial-minutes 2 is more than --budget 1" in err and len(err.strip().splitlines()) == 1


def test_default_trial_minutes_are_an_eighth_of_the_budget_within_2_to_10() -> None:
    from seq2seq.tools.tune import default_trial_minutes

    assert [default_trial_minutes(b) for b in (1, 8, 40, 240)] == [1, 2, 5, 10]


def test_the_default_space_is_five_settings_with_one_size_knob(work: Path) -> None:
    from seq2seq.tools.tune_space import check_space, default_space, expand

    space = default_space()
    check_space(space, work / "tiny.yaml", [], "the default space")  # raises on any value the config refuses
    assert [d.key for d in space] == ["train.lr", "size", "model.dropout", "train.label_smoothing", "train.max_tokens"]
    assert space[0].log and space[4].log
    assert expand(space, {"size": 256, "train.lr": 0.001}) == {"model.hidden_size": 256, "model.emb_size": 128, "train.lr": 0.001}
    assert "size in [128, 768, step 64] (model.hidden_size = size, model.emb_size = size x 0.5)" == space[1].describe()


def test_the_settings_said_not_searched_leave_out_those_the_space_searches() -> None:
    from seq2seq.config import Config
    from seq2seq.tools.tune import fixed_settings

    cfg, where = Config(), Path("c.yaml")
    assert fixed_settings(cfg, where, set()).startswith(f"attention {cfg.model.attention}, layers ")
    said = fixed_settings(cfg, where, {"model.attention", "train.schedule", "train.ema_decay", "train.lr"})
    assert "attention" not in said and "schedule" not in said and "ema_decay" not in said
    assert said == f"layers {cfg.model.enc_layers}/{cfg.model.dec_layers}, clip_grad {cfg.train.clip_grad:g} and every other key of c.yaml"


def test_the_g2p_space_is_the_default_space_narrowed(work: Path) -> None:
    from seq2seq.tools.tune_space import check_space, default_space, read_space

    space = read_space(Path(__file__).resolve().parents[2] / "configs" / "spaces" / "g2p.yaml")
    check_space(space, work / "tiny.yaml", [], "g2p.yaml")
    assert [d.key for d in space] == [d.key for d in default_space()]


@pytest.mark.parametrize("space, says", [
    ("size: {type: int, low: 16, high: 32, sets: {model.hiden_size: 1}}\n", "space.yaml: model.hiden_size: unknown key"),
    ("size: {type: int, low: 16, high: 32, sets: {model.hidden_size: 1, model.emb_size: 0.01}}\n", "space.yaml: model.emb_size: must be >= 1, got 0"),
    ("size: {type: int, low: 16, high: 32, sets: {model.hidden_size: 0}}\n", "the factor must be a number above 0"),
    ("size: {type: int, low: 16, high: 32, sets: [model.hidden_size]}\n", "`sets` must map config keys to factors"),
    ("model.size: {type: int, low: 16, high: 32, sets: {model.hidden_size: 1}}\n", "a knob with `sets` is named without a dot"),
    ("size: {type: int, low: 16, high: 32}\n", "a config key is section.key"),
    ("size: {type: int, low: 16, high: 32, sets: {model.hidden_size: 1}}\nmodel.hidden_size: {type: int, low: 16, high: 32}\n",
     "model.hidden_size is given twice"),
    ("train.valid_every_minutes: {type: float, low: 1, high: 2}\n", "train.valid_every_minutes is set by `seq2seq tune` itself"),
])
def test_a_bad_knob_is_one_line_and_exit_2(work: Path, capsys, monkeypatch, space: str, says: str) -> None:
    (work / "space.yaml").write_text(space, encoding="utf-8")
    code, _, err = invoke(capsys, monkeypatch, *tune_args())
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert says in err
    assert not (work / "study").exists()


def test_the_first_trials_are_quasi_random_then_multivariate_tpe() -> None:
    from seq2seq.tools.tune import choose_sampler

    study = optuna.create_study()
    assert isinstance(choose_sampler(optuna, study, 3, startup=2), optuna.samplers.QMCSampler)
    for _ in range(2):
        study.tell(study.ask(), 1.0)
    sampler = choose_sampler(optuna, study, 3, startup=2)
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._multivariate


def test_what_a_budget_buys() -> None:
    """With rungs at a ninth and a third, 2/3 of the trials stop at a ninth, 2/9 at a third, 1/9 run whole: 7/27 of a
    trial's minutes each, plus its start-up; a third of them, within 3 and 10, are quasi-random."""
    from seq2seq.tools.tune import plan_trials
    from seq2seq.tools.tune_trial import Rungs

    plan = plan_trials(60, 8, Rungs.for_minutes(8), 0.5, None)
    assert (plan.trials, plan.full, plan.startup) == (int(60 // (8 * 7 / 27 + 0.5)), 7, 8) and plan.trials == 23
    assert plan_trials(60, 8, Rungs.for_minutes(8), None, 5).startup == 5  # a study keeps the start it began with
    assert "buys about 23 trials of 8 min (7 if none were pruned" in plan.describe(60, 8)


def write_records(path: Path, records: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def validation(step: int, elapsed: float, **scores: float) -> dict:
    return {"step": step, "epoch": 1, "val_loss": 1.0, **{f"val_{k}": v for k, v in scores.items()}, "elapsed": elapsed}


@pytest.mark.parametrize("value, others, lower, on", [
    (30.0, [], False, False),  # alone at the rung: it has beaten nobody
    (30.0, [20.0], False, True), (10.0, [20.0], False, False), (20.0, [20.0], False, True),  # a tie goes its way
    (30.0, [40.0, 20.0], False, False),  # 3 scores: only the best goes on
    (30.0, [40.0, 20.0, 10.0, 5.0, 1.0], False, True),  # 6 scores: the best two
    (30.0, [40.0, 50.0, 10.0, 5.0, 1.0], False, False),
    (5.0, [10.0], True, True), (15.0, [10.0], True, False),  # error rates: lower is better
])
def test_a_trial_goes_on_only_among_the_best_third_and_never_alone(value, others, lower, on) -> None:
    from seq2seq.tools.tune import goes_on

    assert goes_on(value, others, lower) is on


def test_the_reporter_reports_each_mark_and_the_rungs_judge_every_trial_at_the_same_second(tmp_path: Path) -> None:
    """Marks every 10 s, rungs at 10 s and 30 s: each validation is reported at its mark's milliseconds (the best so
    far), the pruner is asked at both rungs and nowhere else; the first trial at a rung stops there."""
    from seq2seq.tools.tune import RungJudge
    from seq2seq.tools.tune_trial import Reporter, Rungs, read_records

    study, rungs = optuna.create_study(direction="maximize"), Rungs(10.0)
    asked: list[int] = []

    def run(name: str, records: list[dict]) -> tuple[bool, object]:
        path = tmp_path / f"{name}.jsonl"
        trial, pruned = study.ask(), False
        judge = RungJudge(study, trial.number, lower_is_better=False)
        reporter = Reporter(trial, "bleu", rungs, lambda step, value: asked.append(step) or judge(step, value))
        for record in records:  # the file grows as the run validates; the reporter reads it whole each time
            write_records(path, [record])
            pruned = reporter.feed(read_records(path))
            if pruned:
                break
        study.tell(trial, state=optuna.trial.TrialState.PRUNED) if pruned else study.tell(trial, reporter.best)
        return pruned, study.trials[-1]

    marks = [validation(10 * m, 10 * m + 0.4, bleu=20.0 + m) for m in range(1, 10)]
    pruned, first = run("first", [{"step": 5, "train_loss": 3.0, "elapsed": 2.0}, *marks])
    assert pruned and first.intermediate_values == {10_000: 21.0} and asked == [10_000]  # alone at the first rung
    pruned, second = run("second", [validation(10 * m, 10 * m + 0.2, bleu=30.0 + m) for m in range(1, 10)])
    assert pruned and max(second.intermediate_values) == 30_000  # beat trial 0 at 10 s, alone at 30 s
    pruned, third = run("third", [validation(10, 10.1, bleu=40.0), validation(20, 20.3, bleu=35.0),
                                  validation(40, 41.0, bleu=45.0),  # a slow validation passed the mark of 30 s
                                  *(validation(10 * m, 10 * m + 0.1, bleu=46.0) for m in range(5, 10))])
    assert not pruned and third.state.name == "COMPLETE"
    assert third.intermediate_values == {10_000: 40.0, 20_000: 40.0, 40_000: 45.0, **{m * 10_000: 46.0 for m in range(5, 10)}}
    assert asked == [10_000, 10_000, 30_000, 10_000, 30_000]  # the rung of 30 s judged at the next mark; the end never


def test_a_trial_alone_at_a_rung_waits_there_and_goes_on_when_a_later_one_shows_it_among_the_best(tmp_path: Path) -> None:
    from seq2seq.tools.tune import PARKED, RungJudge, next_parked

    study = optuna.create_study(direction="maximize")
    first = study.ask()
    judge = RungJudge(study, first.number, lower_is_better=False)
    first.report(21.0, 333)
    assert judge(333, 21.0) and judge.parked == (333, 21.0)  # alone: stopped, parked
    (tmp_path / "trial-0000").mkdir()
    (tmp_path / "trial-0000" / "last.pt").write_bytes(b"")
    first.set_user_attr("run_dir", str(tmp_path / "trial-0000"))
    study.tell(first, state=optuna.trial.TrialState.PRUNED)
    study.set_user_attr(PARKED, {"0": [333, 21.0]})
    assert next_parked(study, lower_is_better=False) is None  # nobody else there yet
    worse = study.ask()
    worse.report(4.0, 333)
    study.tell(worse, state=optuna.trial.TrialState.PRUNED)
    trial, step = next_parked(study, lower_is_better=False)
    assert (trial.number, step) == (0, 333)
    better = study.ask()  # two better than it at 333 of 3 scores: it is beaten where it waited, and stays stopped
    better.report(30.0, 333)
    study.tell(better, state=optuna.trial.TrialState.PRUNED)
    late = study.ask()
    late.report(31.0, 333)
    study.tell(late, state=optuna.trial.TrialState.PRUNED)
    assert next_parked(study, lower_is_better=False) is None and study.user_attrs[PARKED] == {}


def test_the_tuner_resumes_a_parked_trials_run_in_its_own_directory(work: Path, capsys, monkeypatch) -> None:
    """Trial 0 stops alone at the first rung; trial 1 scores worse there; trial 2 is trial 0's run resumed
    (`train --resume` in trial-0000, its first rung passed), and the table says so."""
    from seq2seq.tools import tune
    from seq2seq.tools.tune_trial import Outcome, Reporter

    class Clock:
        now = 0.0

        def monotonic(self) -> float:
            return self.now

    clock, commands = Clock(), []

    def fake_run_trial(trial, command, run_dir, metric, rungs, judge, passed=0):  # type: ignore[no-untyped-def]
        commands.append((command, run_dir, passed))
        lr = float(next(a.split("=", 1)[1] for a in command if a.startswith("train.lr=")))
        reporter = Reporter(trial, metric, rungs, judge)
        reporter.judged = passed
        pruned = False
        for mark in range(1, 10):
            records = [{"step": m, "val_bleu": lr * 1000 + m, "elapsed": m * rungs.interval + 0.01} for m in range(1, mark + 1)]
            if reporter.feed(records):
                pruned = True
                break
        clock.now += 4.0
        state = "pruned" if pruned else "complete"
        return Outcome(state, reporter.best, reporter.seconds, reporter.updates, 4.0,
                       pruned_at=reporter.reported * rungs.interval if pruned else None)

    monkeypatch.setattr(tune, "run_trial", fake_run_trial)
    monkeypatch.setattr(tune, "time", clock)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    (work / "study").mkdir()
    storage = JournalStorage(JournalFileBackend(str(work / "study" / "study.journal")))
    study = optuna.create_study(study_name="study", storage=storage, direction="maximize")
    study.enqueue_trial({"model.hidden_size": 32, "train.lr": 0.02, "model.attention": "luong"})
    study.enqueue_trial({"model.hidden_size": 16, "train.lr": 0.003, "model.attention": "luong"})
    (work / "study" / "trial-0000").mkdir()
    (work / "study" / "trial-0000" / "last.pt").write_bytes(b"")  # what the stopped run saved
    code, out, err = invoke(capsys, monkeypatch, "tune", "--config", "tiny.yaml", "--space", "space.yaml", "--out", "study",
                            "--budget", "0.4", "--trial-minutes", "0.05")
    assert code == 0, err
    assert [(run_dir.name, passed, "--resume" in command) for command, run_dir, passed in commands[:3]] == [
        ("trial-0000", 0, False), ("trial-0001", 0, False), ("trial-0000", 1, True)]
    assert "trial 2: trial 0's run goes on from where it waited alone" in err
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows["0"].endswith("alone: went on as 2") and rows["2"].split()[4] == "21.00"  # at the first rung: trial 0's score


def test_error_rates_are_minimized_and_the_moving_average_counts_where_it_scores_better() -> None:
    from seq2seq.tools.tune_trial import Reporter, Rungs

    reporter = Reporter(optuna.create_study(direction="minimize").ask(), "cer", Rungs(1.0))
    reporter.feed([validation(10, 1.0, cer=40.0), validation(20, 2.0, cer=30.0), validation(30, 3.0, cer=35.0)])
    assert reporter.best == 30.0
    reporter = Reporter(optuna.create_study(direction="maximize").ask(), "bleu", Rungs(1.0))
    reporter.feed([validation(10, 1.0, bleu=20.0, ema_bleu=22.0), validation(20, 2.0, bleu=21.0, ema_bleu=19.0)])
    assert reporter.best == 22.0  # best.pt holds the EMA's weights then


FAKE_RUN = """\
import json, signal, sys, time
def stop(signum, frame):
    open("stopped", "w").write(signal.Signals(signum).name)
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
for i in range(1, 200):
    with open("metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": i, "val_bleu": 50.0 - i, "elapsed": float(i)}) + "\\n")
    time.sleep(0.05)
"""


def test_a_pruned_run_is_stopped_with_sigint_so_that_it_saves_last_pt(tmp_path: Path) -> None:
    """`watch` reads the growing metrics.jsonl of a (fake) run and stops it with SIGINT when the pruner says so."""
    from seq2seq.tools.tune_trial import Reporter, Rungs, watch

    trial = optuna.create_study(direction="maximize").ask()
    proc = subprocess.Popen([sys.executable, "-c", FAKE_RUN], cwd=tmp_path, start_new_session=True)
    reporter = Reporter(trial, "bleu", Rungs(1.0, at=(3,)), lambda step, value: True)
    assert watch(proc, tmp_path / "metrics.jsonl", reporter, poll=0.05) is True
    assert proc.returncode == 130 and (tmp_path / "stopped").read_text() == "SIGINT"
    assert reporter.reported is not None and reporter.reported >= 3


def test_a_trial_left_running_by_a_killed_tuner_is_failed_and_its_settings_queued(tmp_path: Path) -> None:
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from seq2seq.tools.tune import recover_orphans, worker_id

    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / "study.journal"))))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = worker_id().rsplit(":", 1)[0]
    orphan, elsewhere, alive = study.ask(), study.ask(), study.ask()
    orphan.suggest_int("model.hidden_size", 16, 64)
    orphan.set_user_attr("worker", f"{host}:{gone.pid}")
    elsewhere.set_user_attr("worker", f"another-host:{gone.pid}")  # another machine's tuner: not ours to judge
    alive.set_user_attr("worker", f"{host}:{os.getppid()}")
    assert recover_orphans(optuna, study) == [orphan.number]
    states = {t.number: t.state.name for t in study.trials}
    assert states == {orphan.number: "FAIL", elsewhere.number: "RUNNING", alive.number: "RUNNING", 3: "WAITING"}
    retry = study.ask()  # the queued settings come first
    assert retry.suggest_int("model.hidden_size", 16, 64) == orphan.params["model.hidden_size"]
    assert retry.user_attrs["retry_of"] == orphan.number


def test_a_trial_following_exact_match_is_said_with_its_word_error() -> None:
    """A G2P study's lines name the word error beside exact match (issue 32 item 7), as eval and the log do."""
    from seq2seq.tools.tune import describe_outcome
    from seq2seq.tools.tune_trial import Outcome

    line = describe_outcome(Outcome("complete", 56.9, 480.0, 4000, 500.0), "exact_match")
    assert line.startswith("val exact match 56.90 (word error 43.10) in 8.00 min, 4000 updates")
