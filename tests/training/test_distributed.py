"""Two processes under torchrun (gloo) make the updates one process makes on the union of their batches."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from seq2seq.config import load_config
from seq2seq.data.batch import BucketSampler, collate, example_lengths
from seq2seq.data.encoding import Encoder, encode_pairs
from seq2seq.data.corpus import load_corpus
from seq2seq.data.tokenizer import plain_tokenizers
from seq2seq.training.distributed import rescale_position
from seq2seq.training.metrics import read_metrics
from seq2seq.model.loss import masked_nll
from seq2seq.model.network import Seq2Seq
from seq2seq.data.vocab import Vocab
from tests.conftest import ROOT as REPO
from tests.conftest import TOY, CliJob, run_cli_many


def test_resume_position_with_another_world_size() -> None:
    assert rescale_position(6, 2, 2) == 6
    assert rescale_position(6, 2, 4) == 3  # 12 global batches consumed: 3 steps of 4
    assert rescale_position(5, 2, 4) == 3  # 10 consumed: the step starting at 12 is the first not yet seen
    assert rescale_position(3, 4, 1) == 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_setup(tmp_path: Path) -> Path:
    for split, n in (("train", 160), ("val", 6)):
        for lang in ("en", "de"):
            lines = (TOY / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:n]
            (tmp_path / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"data: {{train: {tmp_path / 'train'}, valid: {tmp_path / 'val'}, src_lang: en, tgt_lang: de}}\n"
        "model: {emb_size: 8, hidden_size: 8, attention: bahdanau, dropout: 0.0}\n"
        # fp32: the reference below computes in fp32 (auto would pick bf16 on a CPU with native bf16)
        f"train: {{run_dir: {tmp_path / 'run'}, batch_size: 8, lr: 0.003, device: cpu, precision: fp32, epochs: 1, seed: 5}}\n"
        "decode: {max_len_b: 2}\n"
    )
    return config


def _torchrun(tmp_path: Path, config: Path, *args: str) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
        "-m", "seq2seq", "train", "--config", str(config), "--quiet", *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def _as_torchrun_would(tmp_path: Path, config: Path, *args: str) -> None:
    """Two processes with the environment torchrun gives its workers (rank, world size, rendezvous address),
    forked from one that has imported torch already (tests/forkserver.py): what torchrun does, less its launcher
    and three interpreters' imports. The real torchrun runs the first session."""
    port = str(_free_port())
    env = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    jobs = [
        CliJob(("train", "--config", str(config), "--quiet", *args), tmp_path, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
        for r in (0, 1)
    ]
    for done in run_cli_many(jobs, workers=2):
        assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_equal_one_process_on_the_union_of_their_batches(tmp_path: Path) -> None:
    config = _write_setup(tmp_path)
    run = tmp_path / "run"
    _torchrun(tmp_path, config, "--set", "train.max_steps=2")
    after_2 = torch.load(run / "last.pt", weights_only=True)
    _as_torchrun_would(tmp_path, config, "--set", "train.max_steps=4", "--resume")
    after_4 = torch.load(run / "last.pt", weights_only=True)
    assert after_2["step"] == 2 and after_4["step"] == 4 and after_4["progress"]["world_size"] == 2

    # Rank 0 alone wrote the run directory: one of each log line and metrics record per session.
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["best.pt", "config.yaml", "last.pt", "metrics.jsonl", "src_vocab.json", "tgt_vocab.json", "train.log"]
    )
    log = (run / "train.log").read_text(encoding="utf-8")
    assert log.count("distributed: 2 processes") == 2 and log.count("resumed ") == 1
    assert [line.count('"val_loss"') for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 1]
    assert (tmp_path / "runs" / "latest").read_text().strip() == str(run.resolve())

    # One process, same initialization, each step on the union of the two ranks' batches.
    cfg = load_config(config)
    d, t = cfg.data, cfg.train
    src_vocab, tgt_vocab = Vocab.load(run / "src_vocab.json"), Vocab.load(run / "tgt_vocab.json")
    src_tok, tgt_tok = plain_tokenizers(d)
    pairs = load_corpus(d, "train")
    examples = encode_pairs(pairs, Encoder(src_tok, src_vocab), Encoder(tgt_tok, tgt_vocab), d.max_len)
    batches = BucketSampler(*example_lengths(examples), batch_size=t.batch_size, seed=t.seed).batches(0)
    torch.manual_seed(t.seed)
    model = Seq2Seq(cfg.model, len(src_vocab), len(tgt_vocab))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    for step in range(4):
        batch = collate([examples[i] for i in batches[2 * step] + batches[2 * step + 1]])
        loss_sum, n_tokens = masked_nll(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out)
        optimizer.zero_grad()
        (loss_sum / n_tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
        optimizer.step()
        if step + 1 in (2, 4):
            theirs = (after_2 if step + 1 == 2 else after_4)["model"]
            diff = max((theirs[k] - v).abs().max().item() for k, v in model.state_dict().items())
            assert diff <= 1e-5, (step + 1, diff)
    assert max((after_4["model"][k] - v).abs().max().item() for k, v in initial.items()) > 1e-3  # it did train


def test_two_processes_stopped_and_resumed_end_as_the_uninterrupted_run(tmp_path: Path) -> None:
    """Dropout and teacher forcing < 1 draw from each rank's own generator: a resume restores every rank's, so the
    weights after 2 + 2 updates equal those after 4 in one session, bit for bit."""
    config = _write_setup(tmp_path)
    random_keys = ["--set", "model.dropout=0.3", "--set", "train.teacher_forcing_ratio=0.6"]
    reference, run = tmp_path / "reference", tmp_path / "run"
    _as_torchrun_would(tmp_path, config, *random_keys, "--set", f"train.run_dir={reference}", "--set", "train.max_steps=4")
    _as_torchrun_would(tmp_path, config, *random_keys, "--set", f"train.run_dir={run}", "--set", "train.max_steps=2")
    _as_torchrun_would(tmp_path, config, *random_keys, "--set", f"train.run_dir={run}", "--set", "train.max_steps=4", "--resume")
    ours, theirs = torch.load(run / "last.pt", weights_only=True), torch.load(reference / "last.pt", weights_only=True)
    assert ours["step"] == theirs["step"] == 4
    for name, value in theirs["model"].items():
        assert torch.equal(ours["model"][name], value), name


def test_two_processes_plan_one_horizon_and_keep_one_ema(tmp_path: Path) -> None:
    """train.max_time with wsd and the EMA under two processes: rank 0 plans the horizon and both take it (a rank
    that planned alone would wait forever for the other), and last.pt holds the EMA."""
    config = _write_setup(tmp_path)
    keys = ["train.schedule=wsd", "train.warmup_steps=2", "train.valid_every=2", "train.max_time=30", "train.max_steps=6",
            "train.ema_decay=0.9"]
    _as_torchrun_would(tmp_path, config, *[arg for key in keys for arg in ("--set", key)])
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["schedule"]["decay_steps"] == 6  # max_steps ends the run before the budget
    assert state["ema"]["weights"].keys() == state["model"].keys() and state["ema"]["updates"] == 6
    log = (tmp_path / "run" / "train.log").read_text(encoding="utf-8")
    assert log.count("learning-rate horizon: 6 updates, planned from the rate of updates 3-5") == 1


def test_two_processes_validate_together_by_rank_0s_clock(tmp_path: Path) -> None:
    """train.valid_every_minutes under two processes: the ranks' clocks differ, so rank 0's decides for both (a rank
    that validated alone would wait in the validation's collectives for the other, which trains on)."""
    config = _write_setup(tmp_path)
    keys = ["train.valid_every_minutes=0.0005"]  # 30 ms: a mark every few of the 10 updates
    _as_torchrun_would(tmp_path, config, *[arg for key in keys for arg in ("--set", key)])
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    validations = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "val_loss" in r]
    assert state["step"] == 10 and state["progress"]["validations"] == len(validations) >= 2
