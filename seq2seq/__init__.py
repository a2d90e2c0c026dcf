"""seq2seq: GRU encoder-decoder translation with attention, where padding changes nothing."""

__version__ = "0.1.0"
