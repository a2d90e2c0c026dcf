"""Where the minutes of a training run go (issue 35 §2): one ordinary `train` run, in this process, with timers
around the loop's phases, then a table of seconds per phase.

The phases, as training/trainer.py's loop runs them (timed by wrapping the functions it calls, so the loop itself
is the one every run executes, unchanged):
  data           collate: the update's examples -> a padded Batch (ids are encoded once, before the loop)
  forward        the model's forward pass in train_step (teacher forcing: logits (B, T, V))
  loss           masked_nll over the logits
  backward       loss.backward()
  grad norm      clip_grad_norm_ (or the norm alone when clipping is off): the non-finite check reads it
  optimizer      optimizer.step()
  step, rest     the rest of train_step: autocast, zero_grad, the loss's sums and finiteness checks
  ema            the moving average of the weights (train.ema_decay)
  validation     scoring the validation set (greedy decoding, the loss; the EMA's too when it is on)
  save           the rest of a validation: best.pt, ckpt-STEP.pt, last.pt, metrics.jsonl, the log line
  logging        the loss / tokens-per-second records every few updates (report)
  loop, rest     the loop's own bookkeeping: the learning rate, the clock, stop checks, the horizon's plan
  final validation, final save   train's validation of the last weights after the loop, when the loop's last
                 validation was at an earlier step (outside train.max_time, as setup is)
  setup          the rest of train(): reading the data, vocabularies, building the model, the data report
On a GPU every timer synchronizes first, so that a phase is not billed for the kernels of the one before.

Usage:
  python scripts/profile_train.py --config configs/g2p_de.yaml --minutes 8 --run-dir runs/profile_g2p
  python scripts/profile_train.py --minutes 0.5 --set train.valid_every=100 --json runs/profile.json
The data paths are the config's (`--set data.train=...` etc. to point elsewhere). Measure on a quiet machine: with
other work on the cores every phase is slower, and not by the same factor.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from seq2seq.config import load_config  # noqa: E402
from seq2seq.training import ema as ema_module  # noqa: E402
from seq2seq.training import trainer  # noqa: E402

PHASES = ("data", "forward", "loss", "backward", "grad norm", "optimizer", "step, rest", "ema", "validation", "save",
          "logging", "loop, rest", "final validation", "final save", "setup")


class Timers:
    """Seconds and calls per phase; `inside` knows whether train_step is running (the forward hook counts only there:
    validation's loss runs the same forward)."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.sync = sync
        self.in_step = False
        self.in_loop = False  # a validation after the loop (train's last, when the loop's was not at its last step)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1

    def wrap(self, name: str, fn: Callable[..., Any], when: Callable[[], bool] = lambda: True) -> Callable[..., Any]:
        """`fn` timed as `name` when `when()` holds; outside the loop as `final NAME`."""
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not when():
                return fn(*args, **kwargs)
            with self.phase(name if self.in_loop else f"final {name}"):
                return fn(*args, **kwargs)
        return timed


def patch(target: Any, name: str, replacement: Any, undo: list[Callable[[], None]]) -> None:
    """Set target.name (which must exist: a renamed function in the trainer fails here, not silently)."""
    original = getattr(target, name)  # AttributeError names what moved
    setattr(target, name, replacement)
    undo.append(lambda: setattr(target, name, original))


def instrument(timers: Timers, undo: list[Callable[[], None]]) -> None:
    """Wrap what training/trainer.py's loop calls. Nested phases are subtracted afterwards (`breakdown`)."""
    patch(trainer, "collate", timers.wrap("data", trainer.collate), undo)

    step = trainer.train_step

    def train_step(*args: Any, **kwargs: Any) -> Any:
        timers.in_step = True
        try:
            with timers.phase("train_step"):
                return step(*args, **kwargs)
        finally:
            timers.in_step = False

    patch(trainer, "train_step", train_step, undo)
    in_step = lambda: timers.in_step  # noqa: E731
    patch(trainer, "masked_nll", timers.wrap("loss", trainer.masked_nll, in_step), undo)
    patch(torch.Tensor, "backward", timers.wrap("backward", torch.Tensor.backward, in_step), undo)
    patch(torch.nn.utils, "clip_grad_norm_", timers.wrap("grad norm", torch.nn.utils.clip_grad_norm_, in_step), undo)
    patch(torch.nn.utils, "get_total_norm", timers.wrap("grad norm", torch.nn.utils.get_total_norm, in_step), undo)
    patch(ema_module.EMA, "update", timers.wrap("ema", ema_module.EMA.update), undo)
    patch(trainer, "validate_and_save", timers.wrap("validate_and_save", trainer.validate_and_save), undo)
    patch(trainer, "score_validation", timers.wrap("validation", trainer.score_validation), undo)
    patch(trainer, "save_last", timers.wrap("save_last", trainer.save_last), undo)
    patch(trainer, "report", timers.wrap("logging", trainer.report), undo)

    loop = trainer.loop

    def timed_loop(run: Any) -> str:
        # The forward pass and the optimizer's step, through the hooks torch gives them: the model is built by now.
        started: list[float] = []

        def before(*_: Any) -> None:
            if timers.in_step:
                timers.sync()
                started.append(time.perf_counter())

        def after(*_: Any) -> None:
            if timers.in_step and started:
                timers.sync()
                timers.seconds["forward"] += time.perf_counter() - started.pop()
                timers.calls["forward"] += 1

        hooks = [run.forward_model.register_forward_pre_hook(before), run.forward_model.register_forward_hook(after)]
        opt_started: list[float] = []

        def opt_before(*_: Any) -> None:  # a step pre-hook that returns something replaces step()'s arguments
            timers.sync()
            opt_started.append(time.perf_counter())

        hooks.append(run.optimizer.register_step_pre_hook(opt_before))

        def opt_after(*_: Any) -> None:
            timers.sync()
            timers.seconds["optimizer"] += time.perf_counter() - opt_started.pop()
            timers.calls["optimizer"] += 1

        hooks.append(run.optimizer.register_step_post_hook(opt_after))
        timers.in_loop = True
        try:
            with timers.phase("loop"):
                return loop(run)
        finally:
            timers.in_loop = False
            for hook in hooks:
                hook.remove()

    patch(trainer, "loop", timed_loop, undo)


def breakdown(timers: Timers, total: float) -> dict[str, float]:
    """Exclusive seconds per phase: a nested phase is taken out of the one around it."""
    s = timers.seconds
    step_parts = s["forward"] + s["loss"] + s["backward"] + s["grad norm"] + s["optimizer"]
    out = {name: s[name] for name in ("data", "forward", "loss", "backward", "grad norm", "optimizer", "ema", "validation", "logging")}
    out["step, rest"] = s["train_step"] - step_parts
    out["save"] = s["validate_and_save"] - s["validation"] + s["save_last"]
    inner = s["data"] + s["train_step"] + s["ema"] + s["validate_and_save"] + s["save_last"] + s["logging"]
    out["loop, rest"] = s["loop"] - inner
    out["final validation"] = s["final validation"]
    out["final save"] = s["final validate_and_save"] - s["final validation"]
    out["setup"] = total - s["loop"] - s["final validate_and_save"]
    return {name: out[name] for name in PHASES}


def profile(cfg: Any, run_dir: Path) -> tuple[Any, Timers, float, dict[str, float]]:
    """Train `cfg` into `run_dir` (replaced) with the timers on; (TrainResult, timers, total s, exclusive s per phase).
    Everything patched is put back, also when training fails."""
    cuda = cfg.train.device != "cpu" and torch.cuda.is_available()  # `auto` trains on CUDA when there is one
    timers = Timers(torch.cuda.synchronize if cuda else (lambda: None))
    undo: list[Callable[[], None]] = []
    start = time.perf_counter()
    try:
        instrument(timers, undo)
        result = trainer.train(cfg, run_dir, overwrite=True, quiet=True)
    finally:
        for restore in reversed(undo):
            restore()
    total = time.perf_counter() - start
    return result, timers, total, breakdown(timers, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "g2p_de.yaml")
    parser.add_argument("--minutes", type=float, default=8.0, help="train.max_time of the run [default: 8]")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config overrides, as train's --set")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/profile_train"), help="the run directory (replaced)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    cfg = load_config(args.config, [*args.overrides, f"train.max_time={args.minutes:g}", f"train.run_dir={args.run_dir}"])
    result, timers, total, phases = profile(cfg, args.run_dir)
    steps = result.progress.step
    loop_s = timers.seconds["loop"]
    print(f"{args.config}, train.max_time {args.minutes:g} min: {steps} updates, {timers.calls['validation'] + timers.calls['final validation']} validations, "
          f"{loop_s:.1f} s in the loop, {total:.1f} s in all (torch threads {torch.get_num_threads()})")
    print(f"{'phase':<16} {'seconds':>9} {'% of all':>9} {'ms/update':>10}")
    for name, seconds in phases.items():
        print(f"{name:<16} {seconds:9.2f} {100 * seconds / total:8.1f}% {1000 * seconds / max(steps, 1):10.2f}")
    if args.json is not None:
        report = {"config": str(args.config), "minutes": args.minutes, "overrides": args.overrides, "updates": steps,
                  "validations": timers.calls["validation"] + timers.calls["final validation"], "total_s": total, "loop_s": loop_s, "phases_s": phases,
                  "threads": torch.get_num_threads()}
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
