"""`make loadtest`: the app as it is deployed (gunicorn workers and a Celery worker, production settings) on a
dedicated, freshly seeded database, driven by locust's virtual users over loopback for a bounded time.

`runner` starts and stops everything and prints the table; `prepare` makes the demo data and the API tokens;
`locustfile` is what the virtual users do; `results` turns their timings into the table and the verdict.
"""
