"""Code locations: a long-lived process serving one load, reloading it atomically.

Loads run in fresh worker processes (``python -m defstate.server.worker``), so edits to
component code take effect on reload and user code never runs in the server process.
"""
