# The PartnerWatch worker image (used by docker-compose.yml). It runs as the unprivileged user
# `partnerwatch` (uid 10001), which owns only /data (the worker's state: Faust tables, the
# embedded warehouse when no ClickHouse server is configured, models).
FROM python:3.11-slim
RUN groupadd --system --gid 10001 partnerwatch \
 && useradd --system --uid 10001 --gid partnerwatch --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin partnerwatch
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY pipeline pipeline
COPY streams streams
COPY detectors detectors
COPY sinks sinks
COPY sources sources
COPY partnerwatch partnerwatch
# A regular (non-editable) install: migrations and the query library are package data.
RUN pip install --no-cache-dir . \
 && mkdir -p /data /models && chown partnerwatch:partnerwatch /data /models
# The web server stays on loopback unless PW_WEB_HOST says otherwise, and the worker refuses to
# listen beyond loopback without PW_API_TOKEN (docker-compose.yml sets both).
ENV PW_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
# numeric, so a runtime can tell it is not root without reading /etc/passwd
USER 10001:10001
ENTRYPOINT ["partnerwatch"]
CMD ["worker"]
