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
    marker = f'extra == "{extra}"'
    packages = [r.split(";")[0].strip() for r in _requirements() if marker in r]
    direct = f"pip install {' '.join(repr(p) for p in packages)}" if packages else f"pip install '{DISTRIBUTION}[{extra}]'"
    return f"{direct} (from the checkout: pip install -e '.[{extra}]')"


def missing_module_hint(module: str) -> str:
    """What to say when `module` is not installed: without torch, what still runs; else the extra that installs it
    (read from this installation's metadata, as `install_hint` reads it)."""
    if module == "torch":
        return (
            "this needs torch, which is not installed here: without torch, `translate` and `serve` run an export "
            "(`seq2seq export`); for checkpoints and training install the full package (pip install torch -e .)"
        )
    import re

    extras = []
    for requirement in _requirements():  # 'scipy>=1.10; extra == "tune"'
        name, extra = re.match(r"[A-Za-z0-9_.-]*", requirement), re.search(r'extra == "([^"]+)"', requirement)
        if extra and name and name.group(0).lower().replace("-", "_") == module.lower():
            extras.append(extra.group(1))
    extras.sort(key=lambda x: x == "dev")  # the extra of the feature, before the developers' one
    where = f": {install_hint(extras[0])}" if extras else ""
    return f"this needs {module}, which is not installed here{where}"


def _requirements() -> list[str]:
    """This installation's requirements as its metadata lists them (pyproject.toml's, extras marked); none when the
    package is not installed."""
    from importlib import metadata

    try:
        return metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
