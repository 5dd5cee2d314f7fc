"""Model theft: a victim behind a prediction API (`api`), the attacks that steal it through it (`extraction`), a
detector of their query streams (`prada`), and proof of ownership (`watermark`).

Importing this package registers nothing; the registries live in the modules that define their members.
"""
