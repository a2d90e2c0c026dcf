"""Translating with an export (`seq2seq export`) on onnxruntime and numpy: no torch, nor any module that imports it.

graphs (the two ONNX sessions, checked against the export's JSON), search (greedy and beam, batched, with the
rules of decode/search.py), translator (text in, text out). Sources are encoded and results made by the torch-free
modules every translation uses (data/encoding, data/results).
"""
