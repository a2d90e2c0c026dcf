"""Word error of one model under several decoding settings (beam size, length penalty), on a TSV of items, overall
and for short (up to 7 letters) and long (16 or more) sources: whether a decoding setting, not training, is a lever.
Several targets per source count an output right when it is any of them (as `seq2seq eval --data`). Choose on the
validation file, not the test file.

Usage:
  python scripts/decode_sweep.py --model runs/g2p_de --data data/wikipron/de/val.tsv [--setting 1:1.0 --setting 5:0.6 ...]
Each --setting is BEAM:ALPHA (alpha: decode.length_penalty); by default greedy, then beam 5 with alpha 0, 0.6, 1, 1.5, 2
and beam 10 with alpha 1. fp32 on the CPU, so that the figures do not hang on the machine's bf16.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from g2p_errors import read_items  # noqa: E402

DEFAULT_SETTINGS = ("1:1.0", "5:0.0", "5:0.6", "5:1.0", "5:1.5", "5:2.0", "10:1.0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--setting", action="append", metavar="BEAM:ALPHA")
    args = parser.parse_args()
    from seq2seq.decode.translator import open_model

    items = read_items(args.data)
    t = open_model(args.model, device="cpu", precision="fp32")
    words = list(items)
    groups = {"all": words, "0-7 letters": [w for w in words if len(w) <= 7], "16+ letters": [w for w in words if len(w) >= 16]}
    print("| beam | length penalty | " + " | ".join(f"word error, {g} ({len(ws):,})" for g, ws in groups.items()) + " |")
    print("|---|---|" + "---|" * len(groups))
    for setting in args.setting or DEFAULT_SETTINGS:
        beam, _, alpha = setting.partition(":")
        decode = dataclasses.replace(t.cfg.decode, beam_size=int(beam), length_penalty=float(alpha or 1.0))
        model = dataclasses.replace(t, cfg=dataclasses.replace(t.cfg, decode=decode))
        cells = []
        for ws in groups.values():
            hyps = [" ".join(h.split()) for h in model.translate(ws)] if ws else []  # whitespace as eval normalizes it
            cells.append(f"{100 * sum(h not in items[w] for w, h in zip(ws, hyps)) / len(ws):.2f}" if ws else "-")
        print(f"| {beam} | {float(alpha or 1.0):g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
