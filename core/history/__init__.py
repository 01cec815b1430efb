"""History: the conversation store (``store``; a conversation is a tree whose current path is what the model sees),
its search, export, writers, stats and training data (``training_data``: answers marked good), and the one answer
recorder (``recorder``) that every caller (chat view, CLI, API) stores answers through.
"""
