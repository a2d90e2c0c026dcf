"""The user-facing errors. `cli.py` turns each into one line on stderr and exit code 2."""


class Seq2SeqError(Exception):
    """Base class: a problem with the user's input, never a bug of ours."""


class ConfigError(Seq2SeqError):
    """A config file or `--set` override is malformed; the message names the dotted key."""


class DataError(Seq2SeqError):
    """A corpus or input file is missing, misaligned or not UTF-8; the message names file:line."""


class CheckpointError(Seq2SeqError):
    """A checkpoint or run directory is missing, truncated, tampered with or incompatible."""
