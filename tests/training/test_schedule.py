"""Learning-rate schedules (curve shapes), the plateau rule, early stopping on a fake metric stream, and their state;
the horizon planned under a time budget, from a given pace."""

from __future__ import annotations

import math

import pytest

from seq2seq.config import TrainConfig, load_config
from seq2seq.errors import ConfigError
from seq2seq.training.schedule import (
    PLAN_BY, Best, EarlyStopping, LRSchedule, Pace, budget_horizon, budget_rate, plan_due, validation_estimate,
)


def schedule(kind: str, warmup: int = 0, decay: int | None = None, **keys: float) -> LRSchedule:
    return LRSchedule(kind, 1e-3, warmup, keys.get("min_lr", 0.0), keys.get("factor", 0.5), int(keys.get("patience", 2)), decay)


def curve(s: LRSchedule, steps: int) -> list[float]:
    return [s.lr_at(step) for step in range(1, steps + 1)]


def improved(scores: list[float], metric: str = "bleu", best: Best | None = None) -> list[bool]:
    """Each score's answer from a Best of `metric` (or `best`, which goes on): did it improve on those before?"""
    best = best if best is not None else Best(metric)
    return [best.update(score) for score in scores]


def test_best_keeps_the_best_score_and_a_tie_is_no_gain() -> None:
    best = Best("bleu")
    assert improved([10.0, 12.0, 12.0, 11.0, 13.0], best=best) == [True, True, False, False, True] and best.score == 13.0
    assert improved([30.0, 25.0, 25.0, 26.0], "cer") == [True, True, False, False]
    assert Best("wer").better(1.0, 2.0) and not Best("chrf").better(1.0, 2.0) and Best("ter").better(5.0, None)
    assert sorted([3.0, 1.0, 2.0], key=Best("cer").rank) == [1.0, 2.0, 3.0]
    assert sorted([3.0, 1.0, 2.0], key=Best("bleu").rank) == [3.0, 2.0, 1.0]


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
    lowered = [s.on_validation(gain) for gain in improved([10, 12, 12, 11, 13, 13, 13, 13, 13, 13, 13, 13])]
    assert lowered == [False, False, False, True, False, False, True, False, True, False, False, False]
    assert s.lr_at(1000) == pytest.approx(2e-4)  # 1e-3 -> 5e-4 -> 2.5e-4 -> floored at min_lr


def test_other_schedules_ignore_validations() -> None:
    s = schedule("warmup_cosine", warmup=5, decay=50)
    before = curve(s, 60)
    assert not any(s.on_validation(gain) for gain in improved([0.0] * 10))
    assert curve(s, 60) == before


def test_schedule_state_round_trip_continues_the_same_curve() -> None:
    s, best = schedule("plateau", patience=1), Best("bleu")
    for gain in improved([5, 4, 6, 6], best=best):
        s.on_validation(gain)
    t = schedule("plateau", patience=1)
    t.load_state_dict(s.state_dict())
    assert t.lr_at(99) == s.lr_at(99)
    gains = improved([5, 7, 7], best=best)
    assert [t.on_validation(g) for g in gains] == [s.on_validation(g) for g in gains]


def test_a_checkpoint_from_before_the_one_best_loads() -> None:
    """Before issue 33 early stopping and the plateau each kept the best beside their count; the count is read."""
    s, stop = schedule("plateau", patience=2), EarlyStopping(3)
    s.load_state_dict({"kind": "plateau", "scale": 0.5, "plateau": {"best": 12.0, "bad": 1}, "decay_steps": None})
    stop.load_state_dict({"best": 12.0, "bad": 2})
    assert s.plateau_bad == 1 and s.lr_at(99) == pytest.approx(5e-4) and stop.bad == 2
    assert s.on_validation(False) and stop.update(False) is None and stop.stopped


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


def stopped_after(stop: EarlyStopping, scores: list[float], metric: str = "bleu", best: Best | None = None) -> list[bool]:
    """`stop.stopped` after each validation score in turn, its gain answered by a Best of `metric` (or `best`)."""
    flags = []
    for gain in improved(scores, metric, best):
        stop.update(gain)
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
    assert stopped_after(EarlyStopping(2), [30.0, 25.0, 26.0, 24.0, 24.0, 24.5], "cer") == [False] * 5 + [True]
    assert stopped_after(EarlyStopping(2), [30.0, 25.0, 26.0], "chrf") == [False, False, True]
    plateau = LRSchedule("plateau", 1.0, 0, 0.0, 0.5, 1, None)
    assert [plateau.on_validation(gain) for gain in improved([40.0, 35.0, 36.0], "wer")] == [False, False, True]


def test_early_stopping_off_never_stops_and_state_round_trips() -> None:
    assert not any(stopped_after(EarlyStopping(None), [1.0] * 50))
    a, best = EarlyStopping(3), Best("bleu")
    stopped_after(a, [5, 6, 6], best=best)
    b = EarlyStopping(3)
    b.load_state_dict(a.state_dict())
    assert stopped_after(b, [6, 6, 6], best=Best("bleu", best.score)) == stopped_after(a, [6, 6, 6], best=best) == [False, True, True]


def test_wsd_holds_the_rate_then_falls_linearly_to_min_lr_over_the_last_fraction() -> None:
    """Horizon 100, decay_fraction 0.2: lr from the end of warmup to update 80, a straight line down to min_lr at
    100, then min_lr."""
    s = LRSchedule("wsd", 1e-3, 10, 1e-5, 0.5, 2, 100, decay_fraction=0.2)
    lrs = curve(s, 130)
    assert lrs[:10] == pytest.approx([1e-3 * step / 10 for step in range(1, 11)])
    assert lrs[9:80] == [1e-3] * 71  # stable, updates 10..80
    steps = [lrs[step - 1] - lrs[step] for step in range(80, 100)]
    assert steps == pytest.approx([(1e-3 - 1e-5) / 20] * 20)  # linear: equal drops
    assert lrs[90 - 1] == pytest.approx((1e-3 + 1e-5) / 2)
    assert lrs[99:] == pytest.approx([1e-5] * 31)


def test_wsd_decay_never_starts_within_warmup() -> None:
    """decay_fraction 1: the decay spans the whole horizon but begins where warmup ends."""
    lrs = curve(LRSchedule("wsd", 1.0, 10, 0.0, 0.5, 2, 50, decay_fraction=1.0), 50)
    assert lrs[9] == pytest.approx(1.0) and lrs[29] == pytest.approx(0.5) and lrs[49] == 0.0


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_decay_fraction_outside_0_1_is_a_config_error_naming_the_key(fraction: float) -> None:
    with pytest.raises(ConfigError, match="train.decay_fraction"):
        load_config(None, [f"train.decay_fraction={fraction}"])
    with pytest.raises(ConfigError, match="train.decay_fraction"):
        LRSchedule("wsd", 1e-3, 0, 0.0, 0.5, 2, 100, decay_fraction=fraction)
    assert load_config(None, ["train.decay_fraction=1.0"]).train.decay_fraction == 1.0


@pytest.mark.parametrize("kind", ["warmup_cosine", "wsd"])
def test_under_max_time_the_rate_holds_at_its_peak_until_the_horizon_is_planned(kind: str) -> None:
    t = TrainConfig(schedule=kind, warmup_steps=10, lr=1e-3, max_time=8.0, max_steps=500)
    s = LRSchedule.from_config(t, default_decay_steps=300)
    assert s.pending and s.decay_steps is None
    assert curve(s, 400)[9:] == [1e-3] * 391  # the peak after warmup, however long
    assert s.state_dict()["decay_steps"] is None
    assert s.plan(1000) == 300  # at most what max_steps and epochs allow
    assert not s.pending and s.lr_at(300) == pytest.approx(0.0, abs=1e-12)
    assert LRSchedule.from_config(t, 300).plan(5) == 11  # never within warmup
    assert not LRSchedule.from_config(TrainConfig(schedule=kind, max_time=8.0, decay_steps=50), 300).pending  # set: kept
    assert not LRSchedule.from_config(TrainConfig(schedule=kind), 300).pending  # no budget: planned from the steps
    assert not LRSchedule.from_config(TrainConfig(schedule="constant", max_time=8.0), 300).pending  # no horizon


def test_a_planned_horizon_is_restored_and_a_pending_one_stays_pending() -> None:
    t = TrainConfig(schedule="wsd", warmup_steps=4, max_time=1.0)
    planned = LRSchedule.from_config(t, 1000)
    planned.plan(120)
    resumed = LRSchedule.from_config(t, 1000)
    resumed.load_state_dict(planned.state_dict())
    assert resumed.decay_steps == 120 and not resumed.pending
    assert curve(resumed, 130) == curve(planned, 130)
    fresh = LRSchedule.from_config(t, 1000)
    fresh.load_state_dict(LRSchedule.from_config(t, 1000).state_dict())
    assert fresh.pending
    # resumed without the budget: the saved horizon still wins over one planned from the steps
    again = LRSchedule.from_config(TrainConfig(schedule="wsd", warmup_steps=4), 1000)
    again.load_state_dict(planned.state_dict())
    assert again.decay_steps == 120


def test_the_horizon_is_the_updates_the_budget_holds_at_the_measured_pace() -> None:
    """100 updates in 130 s, 30 of them in 2 validations, one per 50 updates: 1 s per update plus 15 s per 50
    updates, 1.3 s each; a budget of 600 s holds the 470 s left / 1.3 = 361 more."""
    pace = Pace(step=100, elapsed=130.0, valid_seconds=30.0, validations=2)
    rate = budget_rate(pace, valid_interval=50, valid_seconds=999.0)  # measured: the estimate is not used
    assert rate == pytest.approx(1 / 1.3)
    assert budget_horizon(pace, 600.0, rate) == 100 + 361
    assert budget_horizon(pace, 100.0, rate) == 100  # past the budget already: no more


def test_before_any_validation_the_horizon_pays_for_an_estimate_of_them() -> None:
    """60 s for 100 updates of 50 sentences each; a validation of 500 sentences is estimated at 10 updates' time
    (6 s), one per 200 updates: 0.6 + 0.03 s per update."""
    pace = Pace(step=100, elapsed=60.0)
    estimate = validation_estimate(pace, valid_sentences=500, sentences_per_update=50)
    assert estimate == pytest.approx(6.0)
    rate = budget_rate(pace, valid_interval=200, valid_seconds=estimate)
    assert rate == pytest.approx(1 / 0.63)
    assert budget_horizon(pace, 600.0, rate) == 100 + int(540 / 0.63)


def test_the_horizon_is_planned_at_the_first_validation_after_warmup_or_at_a_share_of_the_budget() -> None:
    budget = 1000.0
    assert not plan_due(Pace(step=9, elapsed=500.0), 10, validated_at=8, budget_s=budget)  # within warmup: never
    assert not plan_due(Pace(step=12, elapsed=20.0), 10, validated_at=8, budget_s=budget)  # validated before its end
    assert plan_due(Pace(step=10, elapsed=20.0), 10, validated_at=10, budget_s=budget)  # at its end
    assert plan_due(Pace(step=40, elapsed=50.0), 10, validated_at=30, budget_s=budget)
    assert not plan_due(Pace(step=40, elapsed=PLAN_BY * budget - 1), 10, validated_at=-1, budget_s=budget)
    assert plan_due(Pace(step=40, elapsed=PLAN_BY * budget), 10, validated_at=-1, budget_s=budget)  # waited enough
    assert not plan_due(Pace(step=0, elapsed=0.0), 0, validated_at=-1, budget_s=budget)
    assert 0.1 <= PLAN_BY <= 0.25


def test_the_pace_is_measured_from_warmups_end() -> None:
    """200 warmup updates in 30 s, then 300 in 30 s (4 s of them a validation): the pace is the 26 s / 300 after
    warmup, not the 56 s / 500 of the whole run, which would plan a horizon short by the slow start."""
    pace = Pace(step=500, elapsed=60.0, valid_seconds=4.0, validations=1, since=(200, 30.0, 0.0))
    assert pace.seconds_per_update == pytest.approx(26.0 / 300)
    whole = Pace(step=500, elapsed=60.0, valid_seconds=4.0, validations=1)
    assert whole.seconds_per_update == pytest.approx(56.0 / 500)
    assert budget_horizon(pace, 480.0, budget_rate(pace, 500, 0.0)) > budget_horizon(whole, 480.0, budget_rate(whole, 500, 0.0))
    at_the_end = Pace(step=200, elapsed=30.0, since=(200, 30.0, 0.0))  # no update after warmup yet: the whole run
    assert at_the_end.seconds_per_update == pytest.approx(30.0 / 200)


def test_wsd_plans_at_the_start_of_its_decay_and_decays_from_there_without_a_jump() -> None:
    """Under a budget wsd holds its peak until (1 - decay_fraction) of the budget (or of the ceiling's updates), then
    plans from the pace of its whole stable phase and decays from that update to the horizon."""
    schedule = LRSchedule("wsd", 1.0, 10, 0.0, 0.5, 2, 1000, decay_fraction=0.2, plan_later=True)
    assert not schedule.plan_due(Pace(step=100, elapsed=79.0), validated_at=100, budget_s=100.0)  # a validation: not yet
    assert schedule.plan_due(Pace(step=100, elapsed=80.0), validated_at=-1, budget_s=100.0)
    assert not schedule.plan_due(Pace(step=5, elapsed=90.0), validated_at=-1, budget_s=100.0)  # within warmup: never
    assert schedule.plan_due(Pace(step=800, elapsed=1.0), validated_at=-1, budget_s=100.0)  # 80% of the ceiling's 1000
    assert schedule.plan(120, step=100) == 120 and schedule.decay_start == 100  # 0.8 x 120 = 96 < 100: from 100 on
    assert schedule.lr_at(100) == 1.0 and schedule.lr_at(101) == pytest.approx(1.0 - 1 / 20)
    assert schedule.lr_at(120) == 0.0
    later = LRSchedule("wsd", 1.0, 10, 0.0, 0.5, 2, 1000, decay_fraction=0.2, plan_later=True)
    later.plan(200, step=100)  # the pace sped up: the decay starts at 0.8 x 200, the rate flat till then
    assert later.decay_start == 160 and later.lr_at(160) == 1.0 and later.lr_at(161) < 1.0
    again = LRSchedule("wsd", 1.0, 10, 0.0, 0.5, 2, 1000, decay_fraction=0.2, plan_later=True)
    again.load_state_dict(schedule.state_dict())
    assert (again.decay_steps, again.decay_start) == (120, 100)
    cosine = LRSchedule("warmup_cosine", 1.0, 10, 0.0, 0.5, 2, 1000, plan_later=True)
    assert cosine.plan_due(Pace(step=100, elapsed=30.0), validated_at=100, budget_s=100.0)  # early: its curve bends

def test_wsd_decays_along_one_minus_sqrt_when_asked() -> None:
    """decay_shape 1-sqrt (Hägele et al. 2024): the same stable phase and end points as linear, lr * (1 - sqrt(p)) in
    between, so below the straight line everywhere inside the decay."""
    linear = LRSchedule("wsd", 1.0, 10, 0.0, 0.5, 2, 100, decay_fraction=0.2)
    sqrt = LRSchedule("wsd", 1.0, 10, 0.0, 0.5, 2, 100, decay_fraction=0.2, decay_shape="1-sqrt")
    assert [sqrt.lr_at(s) for s in range(1, 81)] == [linear.lr_at(s) for s in range(1, 81)]
    assert sqrt.lr_at(85) == pytest.approx(1.0 - (5 / 20) ** 0.5)
    assert all(sqrt.lr_at(s) < linear.lr_at(s) for s in range(81, 100))
    assert sqrt.lr_at(100) == linear.lr_at(100) == 0.0
    assert load_config(None, ["train.decay_shape=1-sqrt"]).train.decay_shape == "1-sqrt"
    with pytest.raises(ConfigError, match="train.decay_shape"):
        load_config(None, ["train.decay_shape=cosine"])
