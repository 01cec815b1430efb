"""Chat: one turn end to end (``service``), the session's chat configuration (``config``, ``defaults``) and the
prompt it sends (``prompt``).
"""
