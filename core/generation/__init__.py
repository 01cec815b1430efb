"""Generation, next to the backends: the fair queue in front of a backend (``scheduler``), continuous batching
on the transformers model (``batching``, ``batch_parts``), the one sampler (``sampling``) and the OpenMP thread
release (``threads``).
"""
