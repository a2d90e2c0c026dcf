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


def test_trials_are_runs_the_study_continues_and_best_yaml_trains(work: Path, capsys, monkeypatch) -> None:
    from seq2seq.config import load_config
    from seq2seq.tools.info import describe

    code, out, err = invoke(capsys, monkeypatch, *tune_args())
    assert code == 0, err
    assert [t.number for t in study_trials(work / "study")] == [0]
    run = work / "study" / "trial-0000"
    assert describe(run / "best.pt")["step"] > 0  # an ordinary run directory: info reads it
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bleu" in r for r in records)
    assert out.splitlines()[0].split()[:5] == ["trial", "hidden_size", "lr", "attention", "val"]
    assert "trial 0: model.hidden_size=" in err and "updates" in err

    code, out, err = invoke(capsys, monkeypatch, *tune_args())  # the same command again continues the study
    assert code == 0, err
    assert [t.number for t in study_trials(work / "study")] == [0, 1]
    assert (work / "study" / "trial-0001" / "metrics.jsonl").exists()
    assert len(out.strip().splitlines()) == 3  # the table: head and both trials

    best = load_config(work / "study" / "best.yaml")
    best_trial = max((t for t in study_trials(work / "study") if t.value is not None), key=lambda t: t.value)
    assert (best.model.hidden_size, best.model.attention) == (best_trial.params["model.hidden_size"], best_trial.params["model.attention"])
    assert best.train.lr == pytest.approx(best_trial.params["train.lr"])
    assert best.train.run_dir is None and best.train.max_time is None  # the base config's, not the trial's
    assert (work / "study" / "trials.png").exists() == HAS_MATPLOTLIB
    code, _, err = invoke(capsys, monkeypatch, "train", "--config", "study/best.yaml", "--set", "train.max_steps=3", "--set", "train.run_dir=final", "--quiet")
    assert code == 0, err
    assert (work / "final" / "best.pt").exists()


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


def test_the_default_space_is_valid_and_searches_the_schedule_only_where_the_config_has_wsd(work: Path) -> None:
    from seq2seq.config import choices
    from seq2seq.tools.tune_space import check_space, default_space, has_key

    space = default_space()
    check_space(space, work / "tiny.yaml", [], "the default space")  # raises on any value the config refuses
    keys = [d.key for d in space]
    assert keys[:6] == ["model.hidden_size", "model.emb_size", "train.lr", "model.dropout", "train.max_tokens", "model.attention"]
    assert ("train.schedule" in keys) == ("wsd" in choices("train", "schedule"))
    assert ("train.ema_decay" in keys) == has_key("train", "ema_decay")


def write_records(path: Path, records: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def validation(step: int, elapsed: float, **scores: float) -> dict:
    return {"step": step, "epoch": 1, "val_loss": 1.0, **{f"val_{k}": v for k, v in scores.items()}, "elapsed": elapsed}


def test_the_reporter_reports_the_best_score_by_seconds_and_the_pruner_stops_a_trailing_trial(tmp_path: Path) -> None:
    """Successive halving with a rung at 10 s of training: a trial behind the best there is pruned, one ahead is not;
    before the rung nothing is pruned, and training records (no score) are not validations."""
    from seq2seq.tools.tune_trial import Reporter, read_records

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=10, reduction_factor=3))

    def run(name: str, records: list[dict], metric: str = "bleu") -> tuple[bool, object, Reporter]:
        path = tmp_path / f"{name}.jsonl"
        trial, pruned = study.ask(), False
        reporter = Reporter(trial, metric)
        for record in records:  # the file grows as the run validates; the reporter reads it whole each time
            write_records(path, [record])
            pruned = reporter.feed(read_records(path))
            if pruned:
                break
        study.tell(trial, state=optuna.trial.TrialState.PRUNED) if pruned else study.tell(trial, reporter.best)
        return pruned, study.trials[-1], reporter

    pruned, first, reporter = run("first", [{"step": 5, "train_loss": 3.0, "elapsed": 2.0}, validation(10, 4.5, bleu=20.0),
                                            validation(20, 8.0, bleu=18.0), validation(30, 12.2, bleu=30.0)])
    assert not pruned and first.intermediate_values == {4: 20.0, 8: 20.0, 12: 30.0}  # the best so far, at whole seconds
    assert (reporter.updates, reporter.seconds) == (30, 12.2)
    pruned, behind, _ = run("behind", [validation(10, 3.0, bleu=25.0), validation(20, 11.0, bleu=26.0), validation(30, 15.0, bleu=40.0)])
    assert pruned and behind.state == optuna.trial.TrialState.PRUNED and max(behind.intermediate_values) == 11  # at the rung
    pruned, _, _ = run("ahead", [validation(10, 3.0, bleu=5.0), validation(20, 11.0, bleu=31.0), validation(30, 15.0, bleu=32.0)])
    assert not pruned
    # the run's last validation, at its max_time: reported, but nothing is left to stop
    late = Reporter(study.ask(), "bleu", until=11.0)
    assert not late.feed([validation(10, 3.0, bleu=25.0), validation(20, 11.0, bleu=1.0)]) and late.reported == 11


def test_error_rates_are_minimized_and_the_moving_average_counts_where_it_scores_better() -> None:
    from seq2seq.tools.tune_trial import Reporter

    reporter = Reporter(optuna.create_study(direction="minimize").ask(), "cer")
    reporter.feed([validation(10, 1.0, cer=40.0), validation(20, 2.0, cer=30.0), validation(30, 3.0, cer=35.0)])
    assert reporter.best == 30.0
    reporter = Reporter(optuna.create_study(direction="maximize").ask(), "bleu")
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
    from seq2seq.tools.tune_trial import Reporter, watch

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=3, reduction_factor=3))
    done = study.ask()
    done.report(60.0, 3)
    assert not done.should_prune()  # the first at the rung: its 60 is the score to beat there
    study.tell(done, 60.0)
    trial = study.ask()
    proc = subprocess.Popen([sys.executable, "-c", FAKE_RUN], cwd=tmp_path, start_new_session=True)
    reporter = Reporter(trial, "bleu")
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
