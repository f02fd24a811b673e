# The Headwater image: the API (`python -m web`), the worker (`python -m worker`) and
# migrations (`alembic upgrade head`) all run from it.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY settings.py worker.py cli.py alembic.ini ./
COPY web ./web
COPY models ./models
COPY activities ./activities
COPY workflows ./workflows
COPY forwarding ./forwarding
COPY orchestration ./orchestration
COPY ingest ./ingest
COPY telemetry ./telemetry
COPY audit ./audit
COPY migrations ./migrations
COPY devstack ./devstack
RUN pip install .

RUN useradd --system --uid 10001 headwater
USER headwater
EXPOSE 8000
CMD ["python", "-m", "web"]
