"""Storage: the SQLite base and numbered migrations shared by history and knowledge-base rows, and the
build-beside-and-swap helper for rebuilt directories (``dirswap``).
"""
