-- Read-only access to the audit warehouse on a ClickHouse server, created with SQL (access
-- control in SQL must be enabled for the administrator running this: access_management = 1).
-- Apply once, as that administrator, after replacing the password placeholder below:
--     clickhouse-client --multiquery < infra/clickhouse/access.sql
-- It mirrors infra/clickhouse/users.d/grafana_ro.xml (the compose stack's file-defined user).
-- Use one or the other on a server: a user defined in users.d cannot be altered or granted by
-- SQL, so on a server that has grafana_ro.xml the grafana_ro statements below fail.
-- Every grant here is SELECT: nothing in this file can write, alter or drop.

-- The limits every analyst query runs under. readonly = 1 refuses every write and every setting
-- change except these limits, which a client may lower (never raise past MAX): the Grafana
-- plugin sets max_execution_time per query, and PartnerWatch's user SQL (POST /v1/sql,
-- `partnerwatch sql`) sets all of them from its PW_SQL_* settings, plus `limit`.
CREATE SETTINGS PROFILE IF NOT EXISTS partnerwatch_readonly SETTINGS
    readonly = 1,
    max_execution_time = 60 CHANGEABLE_IN_READONLY,
    max_result_rows = 1000000 MAX 1000000 CHANGEABLE_IN_READONLY,
    max_result_bytes = 1073741824 MAX 1073741824 CHANGEABLE_IN_READONLY,
    `limit` = 0 MAX 1000001 CHANGEABLE_IN_READONLY,
    result_overflow_mode = 'throw',
    max_rows_to_read = 10000000000 MAX 10000000000 CHANGEABLE_IN_READONLY,
    max_memory_usage = 10000000000 MAX 10000000000 CHANGEABLE_IN_READONLY;

-- Analysts and dashboards read the audit database, nothing else.
CREATE ROLE IF NOT EXISTS partnerwatch_analyst SETTINGS PROFILE 'partnerwatch_readonly';
GRANT SELECT ON audit.* TO partnerwatch_analyst;

-- A ceiling per hour on what one analyst can ask for (a runaway dashboard, a scraping script).
CREATE QUOTA IF NOT EXISTS partnerwatch_analyst
    FOR INTERVAL 1 hour MAX queries = 20000, result_rows = 100000000
    TO partnerwatch_analyst;

-- Grafana's reader. Replace CHANGE_ME_GRAFANA_PASSWORD with the password Grafana's ClickHouse
-- data source uses (GRAFANA_CLICKHOUSE_PASSWORD in docker-compose.yml) before applying.
CREATE USER IF NOT EXISTS grafana_ro
    IDENTIFIED WITH sha256_password BY 'CHANGE_ME_GRAFANA_PASSWORD'
    HOST ANY
    SETTINGS PROFILE 'partnerwatch_readonly';
GRANT partnerwatch_analyst TO grafana_ro;
SET DEFAULT ROLE partnerwatch_analyst TO grafana_ro;

-- The user PartnerWatch runs user SQL as (POST /v1/sql, `partnerwatch sql`, `query`): never the
-- writer of PW_CLICKHOUSE_URL. Replace CHANGE_ME_READER_PASSWORD with PW_CLICKHOUSE_READER_PASSWORD
-- (the worker's PW_CLICKHOUSE_READER_USER is partnerwatch_reader by default) before applying.
CREATE USER IF NOT EXISTS partnerwatch_reader
    IDENTIFIED WITH sha256_password BY 'CHANGE_ME_READER_PASSWORD'
    HOST ANY
    SETTINGS PROFILE 'partnerwatch_readonly';
GRANT partnerwatch_analyst TO partnerwatch_reader;
SET DEFAULT ROLE partnerwatch_analyst TO partnerwatch_reader;
