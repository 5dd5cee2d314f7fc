"""Executors: what takes queued runs from the store and executes their studies outside the web server.

- `worker`: one worker process's loop (claim, execute, report, honour cancel, beat), `python -m dlsec_core worker`.
- `local`: keeps `DLSEC_WORKERS` worker processes alive for a store on this machine (the default executor).
"""
