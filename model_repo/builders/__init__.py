"""Model builders: one set of weights per model, each framework's artifact built natively.

`python -m model_repo.builders` (or `servegate models build`) trains or seeds a model's
reference weights, then runs one exporter module per framework over them.
"""
