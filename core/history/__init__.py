"""History: the conversation store (``store``), its search, export, writers and stats, and the one answer
recorder (``recorder``) that every caller (chat view, CLI, API) stores answers through.
"""
