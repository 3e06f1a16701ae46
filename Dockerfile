# The PartnerWatch worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline pipeline
COPY streams streams
COPY detectors detectors
COPY sinks sinks
COPY infra/clickhouse infra/clickhouse
RUN pip install --no-cache-dir -e .
ENV PW_WEB_HOST=0.0.0.0 PW_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["partnerwatch"]
CMD ["worker"]
