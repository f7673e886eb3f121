# The duoli image: `duoli worker`, `duoli api` and the tools (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what `pip install .` needs: the repo root also holds local run data.
COPY pyproject.toml README.md LICENSE ./
COPY duoli ./duoli
COPY streams ./streams
COPY models ./models
COPY rules ./rules
COPY connectors ./connectors
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 duoli
USER duoli
WORKDIR /home/duoli

CMD ["duoli", "worker"]
