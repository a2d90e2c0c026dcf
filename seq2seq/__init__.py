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

# oneDNN (torch's CPU kernels for bf16 matmuls and GRUs) keeps up to 1,024 compiled primitives, one per new
# tensor shape; with length-bucketed batches every batch brings new shapes, and the cache alone grew a 30-minute
# run to ~5 GB. oneDNN reads this once, when torch loads it, so it is set here, before any submodule imports torch:
# for `import seq2seq`, the console script, `python -m seq2seq` and torchrun alike. A value the user set is kept.
ONEDNN_CACHE_CAPACITY = "8"
if "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ and "DNNL_PRIMITIVE_CACHE_CAPACITY" not in os.environ:
    os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = ONEDNN_CACHE_CAPACITY

__version__ = "0.1.0"

__all__ = ["Translator", "train", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Translator":
        return importlib.import_module("seq2seq.decode.translator").Translator
    if name == "train":
        return importlib.import_module("seq2seq.api").train
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
