#!/usr/bin/env bash
# The local ElasticMQ runner (the SQS stand-in), from a checkout: fetch | start | stop | status.
# The runner itself ships inside the package (partnerwatch/elasticmq_runner/elasticmq.sh, also run
# by `partnerwatch elasticmq`).
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../partnerwatch/elasticmq_runner/elasticmq.sh" "$@"
