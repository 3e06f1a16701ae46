# The PartnerWatch worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY pipeline pipeline
COPY streams streams
COPY detectors detectors
COPY sinks sinks
COPY sources sources
COPY partnerwatch partnerwatch
# A regular (non-editable) install: migrations and the query library are package data.
RUN pip install --no-cache-dir .
# The web server stays on loopback unless PW_WEB_HOST says otherwise, and the worker refuses to
# listen beyond loopback without PW_API_TOKEN (docker-compose.yml sets both).
ENV PW_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["partnerwatch"]
CMD ["worker"]
