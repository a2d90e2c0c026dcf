"""Using a trained model: greedy and beam search, the Translator, evaluation, translation results."""
