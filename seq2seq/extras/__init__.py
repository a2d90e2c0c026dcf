"""The optional parts beside the core: each imports only from the core (seq2seq/*.py).

The core reaches one of them only by name, where a config key, a measured rule or a command selects it:
subword (data.level bpe/unigram), shards (a shard folder in the run directory), distributed (torchrun's
environment), fast_decoder (its `pays` rule), quantize (decode.quantize), schedule and metrics (the trainer's
learning-rate schedules, early stopping and metrics.jsonl), results (translate's JSON lines and heatmaps),
and commands (the CLI commands info, serve, plot, bench, preprocess, average). Some need an extra:
serve (pip install 'seq2seq[serve]'), plot ('seq2seq[plot]'), tensorboard ('seq2seq[tensorboard]').
"""
