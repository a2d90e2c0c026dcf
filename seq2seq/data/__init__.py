"""Text in, batches out: tokenizers, vocabularies, corpus reading, collate and bucketing, shards."""
