"""The local stack for `make run` and `make test`: embedded Postgres, the Temporal dev
server, migrations, the first workspace, and a supervisor that runs the worker and the API."""
