"""Lessons: a workshop's lesson path, read from data files (`lessons/*.md`), with checkpoints the lab verifies.

`schema` parses and validates a lesson file, `checks` evaluates a step's checkpoint against what the learner
did (their answer, their stored runs, the stored models), `progress` keeps each participant's passed steps in
the store's SQLite database. Nothing here imports streamlit: the CLI or a notebook can grade a lesson too.
"""
