#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: stack_evidence
short_description: Gather the evidence of an OctoLLM stack in one task, probes running concurrently
version_added: 0.1.0
description:
  - Collects the requested evidence kinds concurrently (one thread per kind, and concurrent queries inside a
    kind) and returns them as one dictionary, so that a procedure pays for one Ansible task instead of one per
    manual step.
  - C(redis) takes C(INFO all) twice, O(redis.sample_seconds) apart, so that the hit rate is a real rate computed
    from cumulative counters; it also reads C(CONFIG GET), C(DBSIZE), C(SLOWLOG GET), a C(SCAN) sample of keys with
    C(TYPE), C(MEMORY USAGE) and C(PTTL) grouped into patterns (ids, hashes, numbers and timestamps normalised),
    counts of given key patterns, the existence of given keys, and the persisted values of the same settings in
    the server's config file. Probes that look keys up run before the INFO window, so they do not count in the
    sampled hit rate; none of them updates the LRU/LFU clock. Nothing is written.
  - C(prometheus) runs a dictionary of named PromQL instant queries concurrently and optionally lists the loaded
    rules (names, and for alerting rules their state) from C(/api/v1/rules).
  - A probe that fails is evidence, not a task failure. The kind's result then has C(ok=false) and
    C(error={kind, message}), where kind is one of C(unreachable), C(auth), C(missing_tool), C(timeout), C(other);
    secrets never appear in a message. A failing sub-probe (for example C(MEMORY USAGE) denied by an ACL) is listed
    under C(probe_errors) and the rest of the kind still returns.
  - C(containers) lists the containers of a deployment over the Docker API (its Compose project's, and per service
    of O(containers.discovery) those found by container name, Docker labels or another Compose project; state, health
    and its last
    output, exit code, OOMKilled, restarts, limits, restart policy, healthcheck, log rotation, mounts) and, on
    request, their memory/CPU/pids from the cgroup files (Docker API stats as the fallback), log tails with
    matching error lines, C(docker system df), C(docker info) with disk usage, and C(docker exec) probes.
  - C(postgres) uses one read-only connection of the admin user (reserved slots) and one SQL round trip per
    concern (connections, settings, statements, tables, integrity, tasks, a procedure's named queries), and pings
    with the application user.
  - C(http) runs named HTTP probes concurrently (status, time, bounded body, selected headers).
  - C(logs) returns the matching lines of log files with file and line number, PII masked, and on request
    listings of files (path, size, modification time; never their content), such as backups.
  - Text that may hold user data (log lines, SQL text, bodies) is masked for PII (e-mail, card numbers with a
    Luhn check, API keys) by C(module_utils/redact.py); the counts per kind are returned as C(redactions).
  - New kinds plug into a collector registry in C(module_utils/collectors.py); they add an option block and do
    not change existing options.
author:
  - OctoLLM operations
requirements:
  - redis (redis-py) on the host that runs the module, for the C(redis) kind.
  - docker (Docker SDK for Python) for the C(containers) kind.
  - psycopg2 for the C(postgres) kind.
attributes:
  check_mode:
    support: full
    details: The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
options:
  kinds:
    description:
      - The evidence kinds to gather.
      - Defaults to every kind whose option block is given. A kind listed here without an option block uses the
        block's defaults.
    type: list
    elements: str
    choices: [containers, http, kubernetes, logs, postgres, prometheus, redis]
  timeout:
    description: Overall deadline in seconds for all kinds together; each probe also has its own timeout.
    type: float
    default: 20
  redis:
    description: Where and what to collect from Redis.
    type: dict
    suboptions:
      host:
        description: Redis host.
        type: str
        default: 127.0.0.1
      port:
        description: Redis port.
        type: int
        default: 6379
      username:
        description: ACL user name (Redis 6+); leave unset for C(requirepass).
        type: str
      password:
        description: Password (C(requirepass) or the ACL user's).
        type: str
      db:
        description: Database number.
        type: int
        default: 0
      tls:
        description: Connect with TLS.
        type: bool
        default: false
      validate_certs:
        description: Verify the server certificate when O(redis.tls=true).
        type: bool
        default: true
      connect_timeout:
        description: Seconds to connect and to wait for each reply.
        type: float
        default: 3.0
      sample_seconds:
        description:
          - Seconds between the two C(INFO all) samples; rates (hit rate, evictions, errors such as C(OOM)) are
            computed over this window. C(0) takes one sample and returns no rates.
        type: float
        default: 2.0
      info:
        description: Take the C(INFO) samples.
        type: bool
        default: true
      config:
        description: Settings read with C(CONFIG GET) (and from O(redis.config_file)). Secret settings are never read.
        type: list
        elements: str
        default: [maxmemory, maxmemory-policy]
      config_file:
        description: The config file the server was started from, as seen from the host running the module.
        type: path
      slowlog:
        description: How many C(SLOWLOG GET) entries to read (command name, key pattern, duration; never arguments).
        type: int
        default: 10
      scan_count:
        description: How many keys to sample with C(SCAN) for the pattern report; C(0) skips the sample.
        type: int
        default: 200
      scan_match:
        description: C(MATCH) glob of the key sample.
        type: str
        default: '*'
      max_patterns:
        description: How many patterns (largest first) the key sample reports.
        type: int
        default: 25
      patterns:
        description: Globs counted over the whole keyspace with C(SCAN MATCH) (bounded by O(redis.pattern_scan_limit)).
        type: list
        elements: str
        default: []
      pattern_scan_limit:
        description: At most this many keys are examined per counted pattern.
        type: int
        default: 100000
      exists:
        description: Keys whose existence and TTL are checked.
        type: list
        elements: str
        default: []
  prometheus:
    description: Where and what to query in Prometheus.
    type: dict
    suboptions:
      url:
        description: Base URL of Prometheus.
        type: str
        default: http://127.0.0.1:9090
      queries:
        description: Named PromQL instant queries, run concurrently. Name them after the procedure to avoid clashes.
        type: dict
        default: {}
      rules:
        description: Also list the loaded rules from C(/api/v1/rules).
        type: bool
        default: false
      timeout:
        description: Seconds per HTTP request.
        type: float
        default: 5.0
      max_series:
        description: At most this many series are returned per query.
        type: int
        default: 20
      username:
        description: Basic-auth user.
        type: str
      password:
        description: Basic-auth password.
        type: str
      bearer_token:
        description: Bearer token (takes precedence over basic auth).
        type: str
      validate_certs:
        description: Verify TLS certificates.
        type: bool
        default: true
  containers:
    description:
      - The containers of a deployment, over the Docker API (Python C(docker) SDK).
      - Every container of the Compose project and every container O(containers.discovery) names is listed, stopped
        ones too, with its state, health, exit code, C(OOMKilled), restart count, limits, restart policy,
        healthcheck, log rotation and mounts (never its environment, but for the masked values of
        O(containers.environment)).
    type: dict
    suboptions:
      project:
        description: Compose project name (label C(com.docker.compose.project)).
        type: str
        default: octollm
      discovery:
        description:
          - How the containers of each service the inventory describes are found, by service name (the name every
            record, log and probe of it then carries), each a dict of C(project), C(compose_service),
            C(container_names) and C(labels), as the C(procedure_run) lookup builds it from C(octollm_services).
          - A service is found by C(container_names) (containers not under Compose), else by Docker C(labels) (all of
            them), else by Compose C(project) (default O(containers.project)) and C(compose_service) (default the
            service's name). The project's other containers keep their Compose service name, except one whose
            Compose service is the name of a service described elsewhere (listed in C(unclaimed), not as that
            service).
        type: dict
        default: {}
      docker_host:
        description:
          - Docker API address (C(unix:///var/run/docker.sock), C(tcp://host:2376)).
          - Default C(DOCKER_HOST), else the local socket.
        type: str
      timeout:
        description: Seconds per Docker API call.
        type: float
        default: 5.0
      services:
        description: Only the containers of these Compose services (empty means all).
        type: list
        elements: str
        default: []
      stats:
        description:
          - Memory (usage, working set, limit, peak, failcnt, OOM kills), CPU (cumulative seconds and percent) and
            pids per running container, read from the container's cgroup files when the module's host can read
            them, else from one-shot Docker API stats (slow, 0.5-1 s per container, run in a thread pool).
        type: bool
        default: false
      stats_sample_seconds:
        description: Seconds between the two CPU samples of O(containers.stats); C(0) gives no CPU percent.
        type: float
        default: 1.0
      cgroup_root:
        description: Where the cgroup file system is mounted on the module's host.
        type: path
        default: /sys/fs/cgroup
      logs:
        description: The last lines of the containers' logs (C(docker logs --tail)) and the lines that match a regex.
        type: dict
        suboptions:
          tail:
            description: Lines per container.
            type: int
            default: 100
          services:
            description: Services whose logs are read (empty means every listed container).
            type: list
            elements: str
            default: []
          pattern:
            description: Regex of the lines returned as C(matches) (errors by default).
            type: str
            default: '(?i)\b(error|exception|traceback|critical|fatal|panic|oom|killed|refused|timed? ?out)\b'
          patterns:
            description: Named regexes counted over the tail (name them after the procedure).
            type: dict
            default: {}
          since_seconds:
            description: Only lines of the last N seconds.
            type: int
          max_matches:
            description: At most this many matching lines per service.
            type: int
            default: 50
          line_max_chars:
            description: Lines are cut to this length.
            type: int
            default: 400
          redact:
            description:
              - PII kinds masked in every returned line (C(email), C(card), C(api_key), C(ssn)).
              - C([]) masks nothing.
            type: list
            elements: str
            default: [email, card, api_key]
      pii_scan:
        description:
          - A scan of the services' logs for PII (Security Violations), every service of the project unless some are
            named; per service only counts by kind and a few redacted sample lines are returned.
        type: dict
        suboptions:
          services:
            description: Services whose logs are scanned (empty means every container of the project).
            type: list
            elements: str
            default: []
          tail:
            description: Lines per container.
            type: int
            default: 1000
          since_seconds:
            description: Only lines of the last N seconds.
            type: int
          allow:
            description:
              - Regexes of text that looks like PII but is not user data (a build's maintainer address), blanked
                before the scan.
            type: list
            elements: str
            default: []
          samples:
            description: The newest lines holding PII returned per service, redacted.
            type: int
            default: 3
          line_max_chars:
            description: Sample lines are cut to this length.
            type: int
            default: 300
          redact:
            description: PII kinds looked for (C(email), C(card), C(api_key), C(ssn)).
            type: list
            elements: str
            default: [email, card, api_key]
      system_df:
        description:
          - C(docker system df) totals (images, containers, volumes, build cache, reclaimable) and which images and
            volumes the project uses.
        type: bool
        default: false
      host:
        description:
          - C(docker info) (CPUs, memory, storage driver, cgroup version and driver, root dir) and, when the Docker
            host is the module's host, C(df) of the Docker root dir and of O(containers.df_paths), C(/proc/meminfo)
            and the load average.
        type: bool
        default: false
      df_paths:
        description: More paths whose file system usage O(containers.host) reports.
        type: list
        elements: path
        default: []
      exec_probes:
        description:
          - Commands run with C(docker exec) in the first running container of a service, for instance
            C(nc -z -w 2 postgres 5432) from the orchestrator. A string runs with C(sh -c); coreutils C(timeout)
            bounds it when the container has it. Output is capped.
        type: list
        elements: dict
        default: []
        suboptions:
          service:
            description: Compose service whose container runs the command.
            type: str
            required: true
          cmd:
            description: Command, a string (shell) or a list (argv).
            type: raw
            required: true
          name:
            description: Name of the probe in the result (default C(<service>) colon C(<cmd>)).
            type: str
          timeout:
            description: Seconds the command may run.
            type: float
            default: 5.0
          user:
            description: User to run the command as.
            type: str
          attempts:
            description:
              - Times the command may run when it exits non-zero (not on a time-out, nor when it cannot run), for a
                sampling tool that can race the process it reads, such as C(py-spy dump --nonblocking).
            type: int
            default: 1
      compose_config:
        description:
          - Validate the project's Compose configuration with C(docker compose config --format json) (the
            C(docker) CLI on the module's host, read-only) and return what a judgement reads of it, never a value of
            the services' environment (see RV(evidence.containers)).
        type: dict
        suboptions:
          project_dir:
            description: The project directory (C(--project-directory)).
            type: path
            required: true
          files:
            description: The Compose files (C(-f)), in order.
            type: list
            elements: path
            default: []
          env_file:
            description: The env file for interpolation (C(--env-file)).
            type: path
          timeout:
            description: Seconds C(docker compose config) may take.
            type: float
            default: 15.0
      environment:
        description:
          - The values of named settings in the containers' environment (C(environment) of each record), masked by
            C(module_utils/redact.py) (a secret's value whole, the password of a URL); no other variable is read.
        type: dict
        suboptions:
          names:
            description: The environment variables to return.
            type: list
            elements: str
            default: []
          services:
            description: Services whose containers return them (empty means every listed container).
            type: list
            elements: str
            default: []
  postgres:
    description:
      - PostgreSQL evidence over one read-only connection of the admin user (whose reserved slots still work when
        the application has used every other connection), one SQL round trip per concern, plus a C(SELECT 1)
        with the application user (O(postgres.ping)).
    type: dict
    suboptions:
      host:
        description: Server host.
        type: str
        default: 127.0.0.1
      port:
        description: Server port.
        type: int
        default: 5432
      database:
        description: Database.
        type: str
        default: octollm
      user:
        description: The application's user (O(postgres.ping), and the admin when O(postgres.admin_user) is unset).
        type: str
        default: octollm
      password:
        description: The application user's password.
        type: str
      admin_user:
        description: A superuser (it gets the C(superuser_reserved_connections) slots).
        type: str
      admin_password:
        description: The admin user's password.
        type: str
      sslmode:
        description: libpq C(sslmode).
        type: str
        default: prefer
      connect_timeout:
        description: Seconds to connect (libpq rounds up to whole seconds, at least 2).
        type: float
        default: 3.0
      statement_timeout_ms:
        description: C(statement_timeout) of the session (C(lock_timeout) is at most 2 s).
        type: int
        default: 5000
      connections:
        description:
          - Sessions by state, user and application, the limits, and the idle-in-transaction, oldest idle and
            long-running sessions.
        type: bool
        default: true
      sessions_limit:
        description: Sessions listed per list of O(postgres.connections).
        type: int
        default: 10
      settings:
        description: Names read from C(pg_settings) (value, unit, context, pending_restart) and C(pg_file_settings).
        type: list
        elements: str
        default: []
      statements:
        description: Top N statements of C(pg_stat_statements) by mean time (C(0) skips).
        type: int
        default: 0
      tables:
        description: Tables (C(name) or C(schema.name)) whose scan statistics, analyze times and indexes are read.
        type: list
        elements: str
        default: []
      integrity:
        description:
          - Data Corruption checks on C(tasks), C(entities) and C(relationships) (counts and a bounded sample of
            ids), namely orphaned relationships at either end (C(NOT EXISTS)), C(entities.properties) that are not JSON
            objects, the constraints present, and C(amcheck) C(bt_index_check) of their B-tree indexes.
        type: bool
        default: false
      amcheck:
        description: Run C(bt_index_check) in O(postgres.integrity) when the extension is installed.
        type: bool
        default: true
      tasks:
        description: Tasks by status, tasks stuck in C(pending) (with their C(action_log) history), recent failures.
        type: bool
        default: false
      stuck_after_seconds:
        description: A C(pending) task older than this (or a C(running) one not updated for this long) is stuck.
        type: int
        default: 300
      running_after_seconds:
        description:
          - C(running) tasks without progress (C(updated_at) or a newer C(action_log) entry) for this long are
            sampled, with when they were dispatched (their last C(routed), C(retried) or C(dispatched) entry).
        type: int
        default: 300
      recent_seconds:
        description: Window of C(recent_by_status) and C(recent_failures).
        type: int
        default: 3600
      sample_limit:
        description: Ids and tasks sampled per check.
        type: int
        default: 10
      queries:
        description:
          - Named read-only queries of a procedure (name to a dictionary of C(sql) and C(params)), each run in the
            admin's read-only session (a concern of its own). C(sql) is one C(SELECT) whose parameters are bound
            from the dictionary C(params) in psycopg2's named (pyformat) style, so a literal percent sign is written
            twice. Each runs as a subquery, at most O(postgres.query_rows) rows, its text values PII-masked
            (O(postgres.redact)).
          - Name them after the procedure to avoid clashes.
        type: dict
        default: {}
      query_rows:
        description: Most rows returned per named query (O(postgres.queries)).
        type: int
        default: 100
      schema:
        description:
          - The deployment's schema (docs/deployment.md), the seed's names where it says nothing. C(search_path) is
            set on the session before any concern (named queries resolve in it too); C(tables) (meaning to a name,
            C(name) or C(schema.name), for C(tasks), C(action_log), C(entities), C(relationships)) and
            C(task_statuses) (meaning to value, for C(pending) and C(running)) are what O(postgres.integrity) and
            O(postgres.tasks) read.
        type: dict
        default: {}
      ping:
        description: Also connect with O(postgres.user) and run C(SELECT 1) (auth failure versus unreachable).
        type: bool
        default: true
      redact:
        description: PII kinds masked in query texts, task goals and action details.
        type: list
        elements: str
        default: [email, card, api_key]
      backups:
        description:
          - Backups in pg_dump's custom format on the host that runs the module, read without the server (also when
            it does not answer) and without changing anything (C(module_utils/pg_dumpfile.py)); C(pg_restore) of
            the server's major version or newer on that host.
        type: dict
        suboptions:
          files:
            description:
              - Backup files to verify as M(octollm.remediation.pg_backup) does with C(state=verified) - not empty,
                the SHA-256 of its manifest (C(<file>.json)) when there is one, C(pg_restore --list) and the data of
                each table in O(postgres.backups.tables).
            type: list
            elements: path
            default: []
          tables:
            description: Tables whose data each of O(postgres.backups.files) must hold (default the manifest's).
            type: list
            elements: str
            default: []
          count_rows:
            description:
              - Also count each table's rows in the file (C(pg_restore --data-only)) and compare them with the
                manifest (slow on a large backup).
            type: bool
            default: false
          directory:
            description: A directory of backups to list (its owner, the files matching O(postgres.backups.pattern)).
            type: path
          pattern:
            description: Glob of the backup files' names in O(postgres.backups.directory).
            type: str
            default: "*.dump"
          verify_newest:
            description: Read the newest backup of O(postgres.backups.directory) with C(pg_restore --list).
            type: bool
            default: false
          compose_service:
            description:
              - A service of a Compose file (C(file), C(name)) whose definition's SHA-256 is returned (never the
                definition, which may hold credentials), e.g. the service that takes scheduled backups.
            type: dict
            suboptions:
              file:
                description: The Compose file.
                type: path
              name:
                description: The service.
                type: str
          bin_dir:
            description: Directory of C(pg_restore) (default the PATH).
            type: path
  http:
    description: Named HTTP probes, run concurrently.
    type: dict
    suboptions:
      probes:
        description: The probes. Give O(http.probes[].url), or O(http.probes[].service) and O(http.probes[].path).
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Name of the probe (its key in the result; the first of two probes with one name wins).
            type: str
            required: true
          url:
            description: Full URL.
            type: str
          service:
            description: A service of O(http.services); its C(url) (or C(http://127.0.0.1:<port>)) is the base URL.
            type: str
          path:
            description: Path appended to the service's URL.
            type: str
            default: /
          method:
            description: HTTP method.
            type: str
            default: GET
          headers:
            description: Request headers (secret, never returned).
            type: dict
          header_set:
            description: Name of a set of O(http.header_sets) to send.
            type: str
          body:
            description: Request body (a dict or list is sent as JSON).
            type: raw
          timeout:
            description: Seconds (default O(http.timeout)).
            type: float
          expect_status:
            description: Statuses that count as success.
            type: list
            elements: int
            default: [200]
      services:
        description:
          - The inventory's C(octollm_services) map (C(name -> {url, port})) that O(http.probes[].service) refers to.
        type: dict
        default: {}
      header_sets:
        description: Named sets of secret request headers (for example an API key), so that needs never carry secrets.
        type: dict
        default: {}
      timeout:
        description: Default seconds per probe.
        type: float
        default: 5.0
      max_body:
        description: Bytes of the body that are read and returned (JSON is parsed when it fits).
        type: int
        default: 2048
      response_headers:
        description: Response headers returned (globs, case-insensitive).
        type: list
        elements: str
        default: [x-ratelimit-*, retry-after, content-type, x-request-id, server]
      validate_certs:
        description: Verify TLS certificates.
        type: bool
        default: true
      concurrency:
        description: Probes in flight at once.
        type: int
        default: 8
      redact:
        description: PII kinds masked in the bodies.
        type: list
        elements: str
        default: [email, card, api_key]
  logs:
    description: Matching lines of log files on the host that runs the module, PII masked.
    type: dict
    suboptions:
      sources:
        description: Files to scan.
        type: list
        elements: dict
        default: []
        suboptions:
          path:
            description: A path or glob (C(~) expanded); the newest O(logs.max_files) files are read.
            type: str
            required: true
          name:
            description: Key of the source in the result (default the path).
            type: str
          pattern:
            description: Regex of the lines returned.
            type: str
            default: .
          max_lines:
            description: The newest N matching lines are returned (over all the source's files).
            type: int
            default: 50
          ignore_case:
            description: Match O(logs.sources[].pattern) case-insensitively.
            type: bool
            default: false
      patterns:
        description: Named regexes counted over every scanned line.
        type: dict
        default: {}
      redact:
        description: PII kinds masked in the returned lines (C(email), C(card) with a Luhn check, C(api_key), C(ssn)).
        type: list
        elements: str
        default: [email, card, api_key]
      max_bytes:
        description: Only the last N bytes of each file are scanned (line numbers stay absolute).
        type: int
        default: 8388608
      max_files:
        description: At most N files per source.
        type: int
        default: 20
      line_max_chars:
        description: Lines are cut to this length.
        type: int
        default: 400
      listings:
        description:
          - Named listings of files on the host that runs the module, read-only and without reading the files,
            each a dictionary of C(paths) (directories), C(patterns) (globs of the file names, default C(*)),
            C(recurse) (default false) and C(max_files) (default 1000). Regular files only (no symlinks), hidden
            ones left out, as M(ansible.builtin.find) does.
          - Name them after the procedure to avoid clashes.
        type: dict
        default: {}
  kubernetes:
    description:
      - Named reads of the Kubernetes API (pods by label, events, a ConfigMap, a Deployment...), run concurrently
        with one client and one discovery, so a procedure pays one module start for all of them. Reads only;
        Secrets come back without their data. Needs the C(kubernetes) Python client.
    type: dict
    suboptions:
      kubeconfig:
        description: Path of the kubeconfig (default C(KUBECONFIG), then C(~/.kube/config)).
        type: path
      context:
        description: Context of the kubeconfig (default its current context).
        type: str
      host:
        description: API server URL (overrides the kubeconfig's; with O(kubernetes.api_key) no kubeconfig is read).
        type: str
      api_key:
        description: Bearer token (default C(K8S_AUTH_API_KEY)).
        type: str
      validate_certs:
        description: Verify the API server's certificate.
        type: bool
        default: true
      namespace:
        description: Namespace of the namespaced reads.
        type: str
        default: octollm
      objects:
        description:
          - Named reads, each C({kind, api_version (default v1), name, label_selector, field_selector, namespaced}).
            Name them after the procedure to avoid clashes. A read with C(name) that finds nothing returns
            C(not_found=true); a read that fails returns C(error) and the others still return.
        type: dict
        default: {}
      timeout:
        description: Seconds per API request.
        type: float
        default: 10.0
notes:
  - Ask for all the kinds a run needs in one task; the role C(octollm.remediation.common) (tasks C(gather.yml))
    does this for the selected procedures and caches the result as a fact.
seealso:
  - module: community.general.redis_info
  - module: community.general.redis_data_info
  - module: community.docker.docker_container_info
  - module: community.postgresql.postgresql_query
"""

EXAMPLES = r"""
- name: Gather Redis and Prometheus evidence in one task
  octollm.remediation.stack_evidence:
    redis:
      host: 127.0.0.1
      port: 6379
      password: "{{ octollm_redis.password }}"
      config_file: "{{ octollm_redis.config_file }}"
      sample_seconds: 2
      scan_count: 200
      patterns: ["entity:*"]
      exists: ["arm:capability:planner-arm"]
    prometheus:
      url: http://127.0.0.1:9090
      rules: true
      queries:
        cache_performance_hit_rate: >-
          sum(rate(cache_hits_total{cache_type="llm"}[1m])) /
          (sum(rate(cache_hits_total{cache_type="llm"}[1m])) + sum(rate(cache_misses_total{cache_type="llm"}[1m])))
  register: evidence

- name: Only the Prometheus rules
  octollm.remediation.stack_evidence:
    kinds: [prometheus]
    prometheus:
      url: http://prometheus.monitoring:9090
      rules: true

- name: Containers with stats and error lines, PostgreSQL connections, health endpoints
  octollm.remediation.stack_evidence:
    containers:
      project: octollm
      stats: true
      logs: {tail: 100, services: [orchestrator], patterns: {llm_errors: '(?i)llm.*error'}}
      exec_probes:
        - {service: orchestrator, cmd: "nc -z -w 2 postgres 5432", name: orchestrator_to_postgres}
    postgres:
      host: 127.0.0.1
      user: octollm
      password: "{{ octollm_postgres.password }}"
      admin_user: postgres
      admin_password: "{{ octollm_postgres.admin_password }}"
      settings: [max_connections, superuser_reserved_connections]
      statements: 10
    http:
      services: "{{ octollm_services }}"
      probes:
        - {name: orchestrator_health, service: orchestrator, path: /health}
        - {name: planner_capabilities, url: "http://127.0.0.1:8100/capabilities"}
    logs:
      sources:
        - {name: guardian, path: /var/log/octollm/guardian*.log, pattern: 'PII detected|violation', max_lines: 20}
  register: evidence
"""

RETURN = r"""
evidence:
  description: One entry per requested kind. Every entry has C(ok), C(error) and C(elapsed_ms).
  returned: always
  type: dict
  contains:
    redis:
      description:
        - C(info) (curated INFO fields of the second sample), C(errorstats) (C(OOM) and others, cumulative),
          C(keyspace), C(cumulative_hit_rate), C(sample) (C(seconds), C(deltas), C(hit_rate), C(lookups),
          C(lookups_per_s), C(evicted_per_s), C(errors) per error kind, C(calls) per command, C(writes),
          C(keys_created)), C(config) (live), C(persisted) (C(file), C(config), C(error)), C(dbsize),
          C(slowlog) (C(entries) with C(command), C(key_pattern), C(duration_us), C(start_time); C(now)),
          C(keys) (C(sampled), C(patterns) with C(pattern), C(count), C(share), C(bytes_total), C(bytes_avg),
          C(bytes_max), C(bytes_share), C(types), C(with_ttl), C(without_ttl), C(ttl_min_s), C(ttl_max_s),
          C(variable_segments), C(example)), C(pattern_counts), C(exists), C(probe_errors).
      type: dict
      returned: when requested
      sample:
        ok: true
        error: null
        config: {maxmemory: "67108864", maxmemory-policy: allkeys-lru}
        sample: {seconds: 2.0, hit_rate: 0.91, lookups: 22, errors: {}}
    prometheus:
      description:
        - C(queries) by name, each with C(query), C(value) (a number when the answer has one series, else null),
          C(series) (C(labels), C(value)), C(empty), C(error); C(rules) (C(names), C(alerts) by name with C(state),
          C(groups), C(error)) when asked.
      type: dict
      returned: when requested
      sample:
        ok: true
        queries: {cache_performance_hit_rate: {value: 0.87, series: [{labels: {}, value: 0.87}], error: null}}
        rules: {names: [CacheMissRate], alerts: {CacheMissRate: {state: inactive}}}
    containers:
      description:
        - C(project); C(containers), a list sorted by service, one entry per container with C(service), C(name),
          C(id) (12 hex), C(number) (replica), C(state) (running, exited, restarting, created...), C(running),
          C(status) (as C(docker ps) shows it), C(health) (healthy, unhealthy, starting, or null without a
          healthcheck), C(health_failing_streak), C(health_log) (the last check's C(exit_code), C(output),
          C(start), C(end)), C(exit_code), C(error), C(oom_killed), C(restarting), C(restart_count), C(started_at),
          C(finished_at), C(created), C(pid), C(image), C(image_id), C(memory_limit), C(memory_reservation),
          C(memory_swap), C(nano_cpus), C(cpus), C(pids_limit), C(restart_policy) (C(name), C(max_retries)),
          C(healthcheck) (configured or not), C(healthcheck_config) (C(interval_s), C(timeout_s), C(retries),
          C(start_period_s)), C(log_config) (C(type), C(max_size), C(max_file)), C(mounts) (C(type), C(source),
          C(destination), C(rw)), C(network_mode), C(project) (its Compose project, or null), C(compose_service) (its
          Compose service, or null), C(found_by) (C(compose), C(name) or C(labels)), with O(containers.environment)
          C(environment) (name to masked value), and with O(containers.stats) C(stats) (null when not
          running) with C(source) (cgroup or api), C(memory_usage_bytes), C(memory_working_set_bytes) (usage minus
          inactive file cache, what C(docker stats) shows), C(memory_limit_bytes) (null when unlimited),
          C(memory_percent), C(memory_max_usage_bytes), C(memory_failcnt), C(memory_rss_bytes),
          C(memory_cache_bytes), C(oom_kills), C(cpu_seconds), C(cpu_percent) (of one core), C(cpu_limit_percent)
          (of its C(cpus) limit), C(sample_seconds), C(pids), and over the same window C(memory_working_set_first_bytes)
          and C(memory_growth_bytes_per_s).
        - C(services) by service name with C(containers), C(running), C(healthy), C(unhealthy), C(states), C(names).
        - C(unclaimed), when some: containers of the project whose Compose service is the name of a service that
          O(containers.discovery) finds elsewhere.
        - C(summary) with C(total), C(running), C(healthy) (counts), and lists of container names C(unhealthy),
          C(starting), C(not_running), C(restarting), C(oom_killed), C(without_healthcheck), and C(restarted)
          (name to restart count).
        - C(stats_sources) (how many containers were read from cgroup files and from the API).
        - C(logs) by service with C(containers), C(lines) (the tail, prefixed by the container name when a service
          has several), C(matches), C(match_count), C(pattern_counts), C(lines_scanned), C(redactions) (per PII
          kind), C(truncated), C(error).
        - C(pii_scan) with O(containers.pii_scan), by service: C(containers), C(lines_scanned), C(redactions) (per PII
          kind), C(samples) (the newest lines that held PII, redacted), C(error).
        - C(exec_probes), a list of C(name), C(service), C(container), C(cmd), C(exit_code), C(output), C(ok) (exit
          code 0), C(elapsed_ms), C(attempts) (runs taken, see O(containers.exec_probes[].attempts)), C(error)
          (C(unreachable) when the service has no running container, C(timeout) on exit code 124).
        - C(system_df) with C(images), C(containers), C(volumes), C(build_cache), each with C(total), C(active),
          C(size_bytes), C(reclaimable_bytes); images also C(dangling), C(largest) and C(project) (rows of C(id),
          C(tags), C(size_bytes), C(shared_bytes), C(containers), C(dangling), C(in_use_by_project)); containers
          also C(project_rw_bytes); volumes also C(project) (C(name), C(size_bytes), C(ref_count)).
        - C(host) with C(server_version), C(ncpu), C(mem_total_bytes), C(driver), C(logging_driver),
          C(cgroup_version), C(cgroup_driver), C(docker_root_dir), C(containers_running), C(containers_stopped),
          C(images), C(warnings), C(local), and when local C(df) (per path C(total_bytes), C(free_bytes),
          C(used_bytes), C(used_percent), C(inodes_used_percent)), C(memory) (C(total_bytes), C(available_bytes),
          C(available_percent), C(swap_total_bytes), C(swap_used_bytes)), C(loadavg), C(cpu_count).
        - C(compose_config) with O(containers.compose_config): C(rc), C(stderr) (a short tail; an env file line it
          cannot parse is named, not shown; C(NAME=value) keeps only the name), C(services) (null when it failed) by
          service with C(mem_limit), C(depends_on) (names) and C(env_quoted_in_logs) (the names of the service's
          environment variables whose value a line of C(logs.<service>.lines) quotes, with those lines' indices; a
          configuration error quotes the value it cannot parse), and C(error) (C(kind), C(message)) when it could
          not run (C(missing_tool) without the docker CLI, C(timeout)).
        - C(probe_errors) by probe (C(inspect:<name>), C(stats:<name>), C(host), C(system_df)) when some failed.
      type: dict
      returned: when requested
      sample:
        ok: true
        project: octollm
        containers:
          - {service: orchestrator, name: octollm-orchestrator-1, state: running, health: healthy, exit_code: 0,
             oom_killed: false, restart_count: 0, memory_limit: 268435456, nano_cpus: 1000000000,
             stats: {source: cgroup, memory_working_set_bytes: 29122560, memory_percent: 10.85, cpu_percent: 4.9}}
        summary: {total: 19, running: 19, healthy: 18, unhealthy: [], not_running: [], oom_killed: []}
    postgres:
      description:
        - C(target), C(user) (the admin), C(connect_ms), C(rtt_ms) (one C(SELECT 1)), C(timings_ms) per concern,
          C(redactions), C(probe_errors) by concern when one failed (the others still return).
        - C(server) with C(version), C(version_num), C(in_recovery), C(started_at), C(uptime_s), C(database),
          C(database_size_bytes), C(user), C(superuser), C(backend_pid), C(extensions) (name to version).
        - C(connections) (client backends, this session excluded) with C(total), C(all_backends),
          C(max_connections), C(superuser_reserved_connections), C(reserved_connections) (PostgreSQL 16+, else
          null), C(superuser_sessions), C(usage_ratio) (total / max_connections), C(available_to_applications),
          C(by_state), C(by_user), C(by_application) (list of C(application_name), C(count), C(states)),
          C(waiting_on_locks), C(idle_in_transaction_count), C(idle_in_transaction) (C(pid), C(usename),
          C(application_name), C(client), C(state), C(state_age_s), C(xact_age_s), C(query)), C(oldest_idle)
          (C(pid), C(usename), C(application_name), C(client), C(state_age_s), C(backend_age_s)), C(long_running)
          (C(pid), C(usename), C(application_name), C(client), C(query_age_s), C(wait_event_type), C(wait_event),
          C(query)).
        - C(settings) with C(settings) (name to C(value), C(unit), C(context), C(pending_restart), C(source),
          C(boot_val), C(reset_val)), C(file_settings) (name to the last C(value) in the config files with
          C(applied), C(error), C(file); null without the privilege), C(missing).
        - C(statements) with C(available), C(reason), C(top) (list of C(queryid), C(query), C(calls), C(mean_ms),
          C(total_ms), C(max_ms), C(rows), C(hit_ratio)); the admin user's own statements are left out.
        - C(tables) with C(tables) (name as asked to C(schema), C(table), C(seq_scan), C(seq_tup_read), C(idx_scan),
          C(idx_tup_fetch), C(n_live_tup), C(n_dead_tup), C(n_mod_since_analyze), C(last_analyze),
          C(last_autoanalyze), C(last_vacuum), C(last_autovacuum), C(total_bytes), C(indexes) (list of C(name),
          C(definition), C(valid), C(ready), C(unique), C(primary), C(scans), C(bytes))) and C(missing).
        - C(integrity) with C(tables_missing) and C(columns_missing) (what the schema lacks; nothing else then),
          C(relationships_total), C(entities_total), C(orphans_from),
          C(orphans_to), C(orphans_total), C(orphan_sample) (C(relationship_id), C(from_entity_id),
          C(to_entity_id), C(missing) list of C(from)/C(to)), C(invalid_properties), C(invalid_properties_by_type),
          C(invalid_properties_sample) (entity ids), C(constraints) (table to a list of C(name), C(type) (p, f, c,
          u...), C(definition), C(validated)), C(foreign_keys) (table to names), C(btree_indexes), C(amcheck)
          (C(available), C(checked), C(corrupt), C(errors)).
        - C(tasks) with C(by_status), C(recent_by_status), C(stuck_after_seconds), C(stuck_count),
          C(stuck_oldest_age_s), C(running_too_long), C(stuck_sample) (C(task_id), C(status), C(assigned_arm),
          C(priority), C(age_s), C(created_at), C(updated_at), C(goal), C(constraints), C(actions) newest first
          with C(action),
          C(arm), C(details), C(timestamp)), C(recent_failures) (C(task_id), C(arm), C(details), C(timestamp)),
          C(running_after_seconds), C(running_count), C(running_oldest_idle_s), C(running_sample) (as
          C(stuck_sample), with C(dispatched_at), C(progress_at), C(idle_s), C(running_s)).
        - C(queries) by name (O(postgres.queries)), each with C(rows) (a list of column to value, PII masked) and
          C(error) (null, or C(kind) and C(message) when that query failed; the others still return).
        - C(ping) with C(user), C(ok), C(connect_ms), C(elapsed_ms), C(saturated) (too many clients), C(error).
        - C(backups) (O(postgres.backups)) with C(files) (path to C(verified), C(path), C(manifest), C(manifest_data),
          C(bytes), C(sha256), C(toc_entries), C(tables) (name to C(rows) and C(file_rows)); or C(verified=false),
          C(failed) and C(msg)), C(directory) (C(path), C(exists), C(uid), C(gid), C(count), C(newest) with
          C(path), C(bytes), C(mtime), C(age_s), C(newest_verified), C(newest_error)) and C(service) (C(file),
          C(exists), C(defined), C(sha256), C(error)).
        - When the admin connection fails the kind has C(ok=false), C(error), C(saturated), still C(ping) and
          C(backups).
      type: dict
      returned: when requested
      sample:
        ok: true
        rtt_ms: 0.5
        connections: {total: 7, max_connections: 40, usage_ratio: 0.175, by_state: {idle: 7}}
        ping: {user: octollm, ok: true, error: null}
    http:
      description:
        - C(probes) by name, each with C(name), C(url), C(method), C(status), C(ok) (status in C(expect_status)),
          C(elapsed_ms), C(body) (parsed JSON, or text), C(body_truncated), C(headers) (the selected response
          headers, lower-case), C(redactions), C(error) (C(unreachable) refused or no such host, C(timeout),
          C(auth) for 401/403/407, C(other) for another unexpected status).
        - C(failed) (names of the probes that are not ok), C(duplicates).
        - The kind itself stays C(ok=true) when services do not answer; that is evidence about them.
      type: dict
      returned: when requested
      sample:
        ok: true
        probes: {orchestrator_health: {status: 200, ok: true, elapsed_ms: 12.8, body: {status: ok}, error: null}}
        failed: []
    logs:
      description:
        - C(sources) by name, each with C(path), C(files) (C(file), C(size_bytes), C(mtime), C(scanned_bytes),
          C(partial), C(lines_scanned), C(match_count), C(pattern_counts), C(redactions), or C(error)),
          C(match_count), C(lines) (the newest matching lines, C(file), C(line) number, C(text) with PII masked),
          C(truncated), C(error) (no file matches, permission denied).
        - C(pattern_counts) (named patterns over every scanned line), C(redactions) per PII kind, C(scanned_at).
        - C(listings) by name (O(logs.listings)), each with C(files) (C(path), C(size_bytes), C(mtime)), C(count),
          C(truncated) (more than C(max_files)), C(missing) (paths that are not directories), C(errors) (by path,
          C(kind) and C(message)), C(error) (an invalid listing), C(listed_at).
      type: dict
      returned: when requested
      sample:
        ok: true
        sources:
          guardian:
            match_count: 1
            lines: [{file: /var/log/guardian.log, line: 812, text: "PII detected value=[REDACTED:email]"}]
        pattern_counts: {security_pii: 1}
    kubernetes:
      description:
        - C(objects) by read name, each with C(items) (the objects as the API serves them) and, when the read
          failed, C(error) (C(auth) for 401/403, C(unreachable), C(timeout), C(other)); C(not_found) for a named
          object that does not exist. C(namespace).
        - The kind fails as a whole (C(ok=false)) only when every read failed.
      type: dict
      returned: when requested
      sample:
        ok: true
        namespace: octollm
        objects: {cache_performance_pods: {items: [{kind: Pod, metadata: {name: redis-7d9f-x2c1q}}]}}
errors:
  description: The kinds that failed as a whole, with their error (C(kind), C(message)).
  returned: always
  type: dict
  sample: {prometheus: {kind: unreachable, message: "URLError: Connection refused"}}
elapsed_ms:
  description: Wall time of the whole collection in milliseconds.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.octollm.remediation.plugins.module_utils.collectors import COLLECTORS, run_all


def argument_spec():
    spec = dict(
        kinds=dict(type="list", elements="str", choices=sorted(COLLECTORS)),
        timeout=dict(type="float", default=20.0),
    )
    for kind, collector in COLLECTORS.items():
        spec[kind] = dict(type="dict", options=collector.OPTIONS)
    return spec


def kind_options(module, kind):
    """The kind's option block, with its defaults applied even when the block was not given."""
    given = module.params.get(kind)
    if given is not None:
        return given
    result = ArgumentSpecValidator(COLLECTORS[kind].OPTIONS).validate({})
    return result.validated_parameters


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    started = time.monotonic()
    kinds = module.params["kinds"]
    if not kinds:
        kinds = [kind for kind in COLLECTORS if module.params.get(kind) is not None]
    if not kinds:
        module.fail_json(
            msg="nothing to gather: give kinds or at least one option block (%s)" % ", ".join(sorted(COLLECTORS))
        )
    requests = {kind: kind_options(module, kind) for kind in kinds}
    evidence = run_all(requests, module.params["timeout"])
    errors = {kind: result["error"] for kind, result in evidence.items() if not result.get("ok")}
    module.exit_json(
        changed=False, evidence=evidence, errors=errors, elapsed_ms=round((time.monotonic() - started) * 1000, 1)
    )


if __name__ == "__main__":
    main()
