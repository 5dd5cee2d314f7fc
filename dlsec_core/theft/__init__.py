"""Model theft: a victim behind a prediction API (`api`), and the attacks that steal it through it (`extraction`).

Importing this package registers nothing; the registries live in the modules that define their members.
"""
