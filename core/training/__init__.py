"""Training personas: data loading and validation (``data``), formatting through the inference chat codec
(``formatting``), LoRA/QLoRA training with transformers' ``Trainer`` (``trainer``), merging an adapter into a full
model (``merge``) and background training jobs kept in SQLite (``jobs``).

Heavy libraries (torch, transformers, peft) are imported inside the functions that use them.
"""
