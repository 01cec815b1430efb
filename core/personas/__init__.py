"""Personas: persona directories (``store``: persona.toml plus optional LoRA files, validated at once) and
their avatars (``avatars``).
"""
