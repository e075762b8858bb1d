"""`make bench` (datasets S then L) and `make bench-small` (S): the targets of SPEC §6, measured on the app as deployed.

`python -m tools.bench S|L` prepares the dedicated database and its dataset (`servers.py`), starts gunicorn and a
Celery worker with production settings, measures each row of SPEC §6 (`harness.py`) with HTTP load from a separate
process on loopback (`driver.py`), prints one table and writes `build/bench/<size>-<timestamp>.json` and
`build/bench/<size>-latest.json`. It never fails on a time: the exit status is non-zero only when the harness
itself breaks. `BENCH_ROWS=deal_list,board` runs a subset (row keys: see `harness.ROWS`). Beside every row it
prints the SQL alone (the statements the row's requests run, timed in-process, or the row's plain SQL), the
app/SQL ratio and the 1-minute load average at the row's start and end. `python -m tools.bench growth` (or
`BENCH_GROWTH=1`) runs the key rows (`harness.GROWTH_ROWS`) on S, M and L and prints their figures side by side.
"""
