"""Optional parts beside the core, each behind its own extra (e.g. `serve`: pip install 'seq2seq[serve]').

They import from the core only; nothing in the core imports them.
"""
