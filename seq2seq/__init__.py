"""seq2seq: GRU encoder-decoder translation with attention, where padding changes nothing.

    import seq2seq
    seq2seq.train("configs/demo.yaml")                    # or a Config, or a dict
    t = seq2seq.Translator.load("runs/demo")
    t.translate(["I love you"])

`Translator` and `train` are imported on first use, so `import seq2seq` stays light (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["Translator", "train", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Translator":
        return importlib.import_module("seq2seq.translator").Translator
    if name == "train":
        # The submodule seq2seq.train is what Python binds to the package attribute `train` once it is
        # imported (by anyone), so the module itself is made callable: seq2seq.train(config) -> api.train.
        return importlib.import_module("seq2seq.train")
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
