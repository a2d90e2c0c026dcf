"""Commands beside the main path: bench, info, average, plots."""
