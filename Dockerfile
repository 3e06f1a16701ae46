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
ENV PW_WEB_HOST=0.0.0.0 PW_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["partnerwatch"]
CMD ["worker"]
