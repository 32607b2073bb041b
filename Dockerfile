# Anxin's one image: every service (ingestor, API, migrations, simulator) runs the `anxin`
# CLI with a different subcommand; see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install --no-cache-dir uv

WORKDIR /app

# Dependencies first (a layer that survives source edits), exactly as locked.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# Then the project itself.
COPY . .
RUN uv sync --frozen --no-dev

# Run unprivileged; the code and the venv stay root-owned and read-only to the service.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin anxin
USER anxin

ENV PATH="/app/.venv/bin:${PATH}"
EXPOSE 8000
ENTRYPOINT ["anxin"]
CMD ["--help"]
