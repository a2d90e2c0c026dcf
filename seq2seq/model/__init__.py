"""The network: the textbook encoder-decoder, its fast training loop, the masked loss, checkpoints, int8."""
