# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A command's output streamed out of a Kubernetes pod to a file on the host running the module (the controller).

What ``pg_backup`` uses on Kubernetes to take the backup before a repair with the server's own ``pg_dump`` INSIDE
the PostgreSQL pod while the file lands OUTSIDE it, never on the database's volume: the pod runs
:data:`POD_DUMP_SCRIPT` through the API's exec (a websocket, channels 1 stdout, 2 stderr, 3 the exit status), whose
stdout is ``pg_dump -Fc`` encoded with ``base64`` (the exec's channels are text in every client version), and
:func:`stream_to` decodes it chunk by chunk into the file as it arrives, hashing it on the way; the whole dump is
never held in memory, and nothing of it goes into a module result. The password stays in the pod: the script reads
it from the environment variable it is NAMED (never a value on a command line).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import time

# $1 database, $2 user, $3 name of the env variable with the password ("" none), $4 snapshot ("" none), $5 lock wait
# (ms). stdout: base64 of pg_dump -Fc; stderr: a version line, then pg_dump's messages; exit status: pg_dump's (the
# idiom with fds 3 and 4 keeps it through the pipe in a POSIX sh, which has no pipefail).
POD_DUMP_SCRIPT = "\n".join(
    [
        "set -u",
        'db="$1"; user="$2"; pwvar="$3"; snapshot="$4"; lockms="$5"',
        'if [ -n "$pwvar" ]; then PGPASSWORD="$(printenv "$pwvar" || true)"; export PGPASSWORD; fi',
        'echo "octollm-pg-dump-version $(pg_dump --version)" >&2',
        "exec 4>&1",
        'rc=$( { { pg_dump -h 127.0.0.1 -U "$user" -d "$db" --format=custom ${snapshot:+"--snapshot=$snapshot"} '
        '--lock-wait-timeout="$lockms" --no-password; echo "$?" >&3; } | base64 >&4; } 3>&1 )',
        'exit "${rc:-1}"',
    ]
)
VERSION_MARK = "octollm-pg-dump-version "
STDERR_MAX = 20000


class StreamError(Exception):
    """The stream could not be completed (the exec failed, timed out, or its output is not whole)."""


def dump_argv(database, user, password_env=None, snapshot=None, lock_timeout_ms=10000):
    """The exec's argv: ``sh -c POD_DUMP_SCRIPT`` and its positional parameters (no value inside the script)."""
    return [
        "sh",
        "-c",
        POD_DUMP_SCRIPT,
        "octollm-backup",
        database,
        user,
        password_env or "",
        snapshot or "",
        str(int(lock_timeout_ms)),
    ]


class Base64Sink(object):
    """Decodes base64 text written in arbitrary pieces (line breaks anywhere) into ``handle``, hashing the bytes."""

    def __init__(self, handle):
        self.handle = handle
        self.rest = ""
        self.digest = hashlib.sha256()
        self.bytes = 0

    def write(self, text):
        if not text:
            return
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        data = self.rest + "".join(text.split())
        cut = len(data) - len(data) % 4
        self.rest = data[cut:]
        if not cut:
            return
        try:
            raw = base64.b64decode(data[:cut], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise StreamError("the pod's output is not base64: %s" % exc) from exc
        self.handle.write(raw)
        self.digest.update(raw)
        self.bytes += len(raw)

    def close(self):
        if self.rest:
            raise StreamError("the pod's output ended in the middle of a base64 block: the stream is cut")
        return {"bytes": self.bytes, "sha256": self.digest.hexdigest()}


def exit_status(client):
    """The command's exit status from the exec's status channel, None when the pod sent none."""
    try:
        return client.returncode
    except Exception:  # no status (the connection dropped): unknown, never success
        return None


def stream_to(client, handle, timeout, clock=time.monotonic):
    """Copy the exec's stdout (base64) into ``handle`` until the pod closes the stream; ``{rc, bytes, sha256,
    stderr, version}``. ``client`` is the kubernetes client's WSClient (or anything with its ``is_open``, ``update``,
    ``read_stdout``, ``read_stderr``, ``returncode`` and ``close``). Raises StreamError on a timeout or a cut stream;
    a non-zero exit status is returned, for the caller to judge with stderr."""
    sink = Base64Sink(handle)
    stderr = []
    size = [0]
    deadline = clock() + timeout

    def drain():
        sink.write(client.read_stdout(timeout=0))
        err = client.read_stderr(timeout=0)
        if err and size[0] < STDERR_MAX:
            stderr.append(err[: STDERR_MAX - size[0]])
            size[0] += len(stderr[-1])

    try:
        while client.is_open():
            if clock() > deadline:
                raise StreamError("the exec did not finish within %ss" % timeout)
            client.update(timeout=1)
            drain()
        drain()
    finally:
        client.close()
    rc = exit_status(client)
    text = "".join(stderr)
    version = next(
        (line[len(VERSION_MARK) :].strip() for line in text.splitlines() if line.startswith(VERSION_MARK)), None
    )
    messages = "\n".join(line for line in text.splitlines() if not line.startswith(VERSION_MARK))
    done = sink.close() if rc == 0 else {"bytes": sink.bytes, "sha256": None}
    return {"rc": rc, "bytes": done["bytes"], "sha256": done["sha256"], "stderr": messages, "version": version}


def open_exec(options, argv):
    """The exec's websocket (the kubernetes client's ``stream`` with ``_preload_content=False``) for ``options``:
    ``namespace``, ``pod``, ``container`` and where the API is (``kubeconfig``, ``context``, ``host``,
    ``validate_certs``; the in-cluster account when no kubeconfig can be read)."""
    try:
        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config
        from kubernetes.stream import stream
    except ImportError as exc:
        raise StreamError("the Python package kubernetes is missing: %s" % exc) from exc
    try:
        api_client = k8s_config.new_client_from_config(
            config_file=options.get("kubeconfig") or None, context=options.get("context") or None
        )
    except Exception as exc:
        try:
            k8s_config.load_incluster_config()
            api_client = k8s_client.ApiClient()
        except Exception:
            raise StreamError("no Kubernetes configuration: %s" % exc) from exc
    configuration = api_client.configuration
    if options.get("host"):
        configuration.host = options["host"]
    if options.get("validate_certs") is False:
        configuration.verify_ssl = False
    api = k8s_client.CoreV1Api(api_client)
    kwargs = {"command": list(argv), "stderr": True, "stdin": False, "stdout": True, "tty": False}
    if options.get("container"):
        kwargs["container"] = options["container"]
    try:
        return stream(
            api.connect_get_namespaced_pod_exec, options["pod"], options["namespace"], _preload_content=False, **kwargs
        )
    except Exception as exc:
        raise StreamError(
            "exec in pod %s/%s failed: %s" % (options["namespace"], options["pod"], " ".join(str(exc).split())[:300])
        ) from exc
