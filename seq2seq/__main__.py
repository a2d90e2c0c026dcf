"""`python -m seq2seq` runs the command line (also what `torchrun -m seq2seq` calls)."""

from seq2seq.cli.app import main

main()
