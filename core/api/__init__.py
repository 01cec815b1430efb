"""Inkstone's OpenAI-compatible HTTP API: the one loaded model served to any OpenAI client.

The only package that imports the web framework (FastAPI, Starlette, uvicorn). ``app.create_app`` builds the
app over an engine getter; ``server.ApiServer`` runs it in a background thread or in the foreground.
"""
