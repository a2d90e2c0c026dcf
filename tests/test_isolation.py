"""The tests leave the checkout's runs/ alone (issue 32): every test starts outside the checkout, so whatever it
trains records runs/latest there, and the session fails if runs/ changed anyway (tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

from seq2seq.model.checkpoint import DEFAULT_MODEL_FILE
from tests.conftest import ROOT


def test_each_test_starts_outside_the_checkout() -> None:
    here = Path.cwd().resolve()
    assert not here.is_relative_to(ROOT.resolve()), here
    assert not any(here.iterdir())  # an empty directory of its own


def test_the_default_model_file_is_relative_to_the_working_directory() -> None:
    # what makes the working directory the guard: training writes runs/latest there, never under the package
    assert not DEFAULT_MODEL_FILE.is_absolute()
    assert os.path.abspath(DEFAULT_MODEL_FILE).startswith(str(Path.cwd()))
