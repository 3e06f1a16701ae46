#!/usr/bin/env bash
# The local Kafka runner, from a checkout: fetch | start | stop | status | reset.
# The runner itself ships inside the package (partnerwatch/kafka_runner/kafka.sh, also run by
# `partnerwatch kafka`); this entry point keeps `bash infra/kafka/kafka.sh start` working.
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../partnerwatch/kafka_runner/kafka.sh" "$@"
