"""GPU benchmarks: task speed against stock mamba-ssm (`tasks.py`), long context against a Transformer
(`long_context.py`), start-up (`start.py`); `timing.py` is the one timing kit they share."""
