"""seq2seq: GRU encoder-decoder translation with attention, where padding changes nothing.

    import seq2seq
    seq2seq.train("configs/demo.yaml")                    # or a Config, or a dict
    t = seq2seq.Translator.load("runs/demo")
    t.translate(["I love you"])

`Translator` and `train` are imported on first use, so `import seq2seq` stays light (no torch).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# torch's CPU kernels keep what they build for each new tensor shape in two caches, and with length-bucketed
# batches every batch brings new shapes:
# - oneDNN's primitive cache (compiled kernels for bf16 matmuls and GRUs; 1,024 by default): alone it grew a
#   30-minute run to ~5 GB;
# - ideep's computation cache (`LRU_CACHE_CAPACITY`, 1,024 by default, used by torch's mkldnn bf16 ops): ~270 MB
#   more held after 40 bf16 steps, and a heap that went on growing around it (RSS 1.60 GB after 150 steps with
#   it, 0.96 GB with a capacity of 1, and bf16 training 4-6% faster with 1; docs/performance.md).
# oneDNN reads its variable once, when torch loads it (ideep reads its own at the first bf16 matmul), so both are
# set here, before any submodule imports torch: for `import seq2seq`, the console script, `python -m seq2seq`
# and torchrun alike. A value the user set is kept.
ONEDNN_CACHE_CAPACITY = "8"
IDEEP_CACHE_CAPACITY = "1"
if "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ and "DNNL_PRIMITIVE_CACHE_CAPACITY" not in os.environ:
    os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = ONEDNN_CACHE_CAPACITY
os.environ.setdefault("LRU_CACHE_CAPACITY", IDEEP_CACHE_CAPACITY)

__version__ = "0.1.0"

__all__ = ["Translator", "train", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Translator":
        return importlib.import_module("seq2seq.decode.translator").Translator
    if name == "train":
        return importlib.import_module("seq2seq.api").train
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
