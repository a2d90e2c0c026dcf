"""The user-facing errors. `cli/app.main` turns each into one line on stderr and exit code 2."""


class Seq2SeqError(Exception):
    """Base class: a problem with the user's input, never a bug of ours."""


class ConfigError(Seq2SeqError):
    """A config file or `--set` override is malformed; the message names the dotted key."""


class DataError(Seq2SeqError):
    """A corpus or input file is missing, misaligned or not UTF-8; the message names file:line."""


class CheckpointError(Seq2SeqError):
    """A checkpoint or run directory is missing, truncated, tampered with or incompatible."""


DISTRIBUTION = "seq2seq-gru"  # the name pyproject.toml gives the package (`seq2seq` on the index is another project)


def install_hint(extra: str) -> str:
    """How to install an optional extra: its packages, from this installation's own metadata (pyproject.toml's
    optional-dependencies, so no list is written twice), and the checkout form `pip install -e '.[extra]'`."""
    from importlib import metadata

    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        requires = []
    marker = f'extra == "{extra}"'
    packages = [r.split(";")[0].strip() for r in requires if marker in r]
    direct = f"pip install {' '.join(repr(p) for p in packages)}" if packages else f"pip install '{DISTRIBUTION}[{extra}]'"
    return f"{direct} (from the checkout: pip install -e '.[{extra}]')"
