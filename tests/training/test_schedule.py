"""Learning-rate schedules (curve shapes), the plateau rule, early stopping on a fake metric stream, and their state."""

from __future__ import annotations

import math

import pytest

from seq2seq.config import TrainConfig
from seq2seq.errors import ConfigError
from seq2seq.training.schedule import EarlyStopping, LRSchedule


def schedule(kind: str, warmup: int = 0, decay: int | None = None, **keys: float) -> LRSchedule:
    return LRSchedule(kind, 1e-3, warmup, keys.get("min_lr", 0.0), keys.get("factor", 0.5), int(keys.get("patience", 2)), decay)


def curve(s: LRSchedule, steps: int) -> list[float]:
    return [s.lr_at(step) for step in range(1, steps + 1)]


def test_constant_with_and_without_warmup() -> None:
    assert curve(schedule("constant"), 50) == [1e-3] * 50
    warm = curve(schedule("constant", warmup=10), 50)
    assert all(a < b for a, b in zip(warm[:10], warm[1:10]))  # strictly rising during warmup
    assert warm[9] == pytest.approx(1e-3) and warm[10:] == [1e-3] * 40


def test_inverse_sqrt_peaks_at_the_end_of_warmup_then_falls_as_one_over_sqrt() -> None:
    lrs = curve(schedule("warmup_inverse_sqrt", warmup=16), 400)
    peak = max(range(len(lrs)), key=lrs.__getitem__) + 1
    assert peak == 16 and lrs[15] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(lrs[16:], lrs[17:]))  # strictly falling after the peak
    assert lrs[64 - 1] == pytest.approx(1e-3 * math.sqrt(16 / 64))
    assert lrs[256 - 1] == pytest.approx(lrs[64 - 1] / 2)


def test_cosine_falls_from_lr_to_min_lr_at_decay_steps_and_stays() -> None:
    lrs = curve(schedule("warmup_cosine", warmup=10, decay=110, min_lr=1e-5), 150)
    assert lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[60 - 1] == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)  # half way: the cosine's midpoint
    assert lrs[110 - 1] == pytest.approx(1e-5) and lrs[149] == pytest.approx(1e-5)


def test_plateau_lowers_the_rate_after_patience_validations_without_gain() -> None:
    s = schedule("plateau", patience=2, factor=0.5, min_lr=2e-4)
    lowered = [s.on_validation(bleu) for bleu in [10, 12, 12, 11, 13, 13, 13, 13, 13, 13, 13, 13]]
    assert lowered == [False, False, False, True, False, False, True, False, True, False, False, False]
    assert s.lr_at(1000) == pytest.approx(2e-4)  # 1e-3 -> 5e-4 -> 2.5e-4 -> floored at min_lr


def test_other_schedules_ignore_validations() -> None:
    s = schedule("warmup_cosine", warmup=5, decay=50)
    before = curve(s, 60)
    assert not any(s.on_validation(0.0) for _ in range(10))
    assert curve(s, 60) == before


def test_schedule_state_round_trip_continues_the_same_curve() -> None:
    s = schedule("plateau", patience=1)
    for bleu in [5, 4, 6, 6]:
        s.on_validation(bleu)
    t = schedule("plateau", patience=1)
    t.load_state_dict(s.state_dict())
    assert t.lr_at(99) == s.lr_at(99)
    assert [t.on_validation(b) for b in [5, 7, 7]] == [s.on_validation(b) for b in [5, 7, 7]]


@pytest.mark.parametrize(
    "keys",
    [
        {"schedule": "warmup_inverse_sqrt", "warmup_steps": 0},
        {"schedule": "warmup_cosine", "warmup_steps": 100, "decay_steps": 50},
    ],
)
def test_impossible_schedules_are_config_errors(keys: dict) -> None:
    with pytest.raises(ConfigError, match="train\\."):
        LRSchedule.from_config(TrainConfig(**keys), default_decay_steps=1000)


def test_cosine_decays_over_the_planned_steps_by_default() -> None:
    s = LRSchedule.from_config(TrainConfig(schedule="warmup_cosine", warmup_steps=10, lr=1e-3), default_decay_steps=200)
    assert s.lr_at(200) == pytest.approx(0.0, abs=1e-12) and s.lr_at(105) == pytest.approx(5e-4)


def stopped_after(stop: EarlyStopping, scores: list[float]) -> list[bool]:
    """`stop.stopped` after each validation score in turn."""
    flags = []
    for score in scores:
        stop.update(score)
        flags.append(stop.stopped)
    return flags


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_early_stopping_stops_after_patience_validations_without_gain(patience: int) -> None:
    stream = [20.0, 21.0, 21.0, 22.5, 22.0, 22.5, 22.4, 22.5, 22.1, 30.0]
    stopped_at = stopped_after(EarlyStopping(patience), stream).index(True)
    # Without gain after 22.5 (index 3): indices 4, 5, 6, ... ; equal is no gain.
    assert stopped_at == {1: 2, 2: 5, 3: 6}[patience]


def test_error_rates_improve_downwards() -> None:
    """train.metric cer or wer: a lower score is the gain, for early stopping as for the plateau schedule."""
    assert stopped_after(EarlyStopping(2, "cer"), [30.0, 25.0, 26.0, 24.0, 24.0, 24.5]) == [False] * 5 + [True]
    assert stopped_after(EarlyStopping(2, "chrf"), [30.0, 25.0, 26.0]) == [False, False, True]
    plateau = LRSchedule("plateau", 1.0, 0, 0.0, 0.5, 1, None, metric="wer")
    assert [plateau.on_validation(x) for x in (40.0, 35.0, 36.0)] == [False, False, True]


def test_early_stopping_off_never_stops_and_state_round_trips() -> None:
    assert not any(stopped_after(EarlyStopping(None), [1.0] * 50))
    a = EarlyStopping(3)
    stopped_after(a, [5, 6, 6])
    b = EarlyStopping(3)
    b.load_state_dict(a.state_dict())
    assert stopped_after(b, [6, 6, 6]) == stopped_after(a, [6, 6, 6]) == [False, True, True]
