"""The `seq2seq` command line."""
