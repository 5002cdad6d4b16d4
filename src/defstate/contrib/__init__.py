"""Ready-made components for real systems.

Each module imports its heavy dependency (dbt, a database driver, ...) only when a refresh
actually runs, so importing a contrib module, and building definitions from stored state,
stays cheap in every process.
"""
