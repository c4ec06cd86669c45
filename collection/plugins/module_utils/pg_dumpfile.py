# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Backups in pg_dump's custom format, read without a server: what the ``pg_backup`` module verifies before and after
it writes or restores one, and what the ``postgres`` evidence kind reports about the backups on a host (option
``backups``) so that a procedure judges them before it plans.

Reads only: a file's SHA-256 against its manifest, its table of contents (``pg_restore --list``), the data of each
table it must hold and, on request, the rows of each table in the file (``pg_restore --data-only``, counted from
COPY's text format); a directory's dump files (the newest first) and its owner; the SHA-256 of one service's
definition in a Compose file (the definition itself, which may hold credentials, is never returned).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time

CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOC_KINDS = (
    "TABLE DATA",
    "SEQUENCE SET",
    "SEQUENCE OWNED BY",
    "FK CONSTRAINT",
    "TABLE",
    "SEQUENCE",
    "CONSTRAINT",
    "INDEX",
    "DEFAULT",
    "EXTENSION",
    "COMMENT",
    "SCHEMA",
    "FUNCTION",
    "VIEW",
    "TRIGGER",
    "ACL",
    "TYPE",
)


class BackupError(Exception):
    pass


def split_table(name):
    """("schema", "table") of "table" or "schema.table" (plain identifiers only)."""
    parts = name.split(".")
    if len(parts) == 1:
        parts = ["public"] + parts
    if len(parts) != 2 or not all(_NAME.match(part) for part in parts):
        raise BackupError("not a plain table name: %r" % name)
    return parts[0], parts[1]


def qualified(name):
    schema, table = split_table(name)
    return '"%s"."%s"' % (schema, table)


def parse_toc(text):
    """Entries of ``pg_restore --list``: dicts with id, desc, schema, name (lines starting with ';' skipped)."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        match = re.match(r"^(\d+);\s+\d+\s+\d+\s+(.*)$", line)
        if not match:
            continue
        rest = match.group(2)
        desc = None
        for candidate in TOC_KINDS:
            if rest.startswith(candidate + " "):
                desc = candidate
                rest = rest[len(candidate) + 1 :]
                break
        if desc is None:
            desc, _, rest = rest.partition(" ")
        fields = rest.split()
        entries.append(
            {
                "id": int(match.group(1)),
                "desc": desc,
                "schema": fields[0] if fields else None,
                "name": fields[1] if len(fields) > 1 else None,
                "line": line,
            }
        )
    return entries


def count_copy_rows(stream):
    """Rows of each COPY block in pg_restore's SQL output (one line per row in COPY's text format)."""
    counts = {}
    current = None
    for raw in stream:
        if current is None:
            if raw.startswith(b"COPY "):
                target = raw[5:].split(b" ", 1)[0].decode("utf-8", "replace")
                current = target.replace('"', "")
                counts[current] = 0
        elif raw in (b"\\.\n", b"\\.\r\n", b"\\."):
            current = None
        else:
            counts[current] += 1
    return counts


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(path, manifest=None):
    return manifest or path + ".json"


def read_manifest(path):
    """The manifest (JSON) at ``path``, or None when there is none."""
    if not os.path.exists(path):
        return None
    with open(path, "r") as handle:
        return json.load(handle)


def find_tool(name, bin_dir=None, which=None):
    """The path of a PostgreSQL client tool: in ``bin_dir``, else on the PATH (``which``, default shutil.which)."""
    if bin_dir:
        candidate = os.path.join(bin_dir, name)
        if os.access(candidate, os.X_OK):
            return candidate
        raise BackupError("%s not found in %s" % (name, bin_dir))
    found = (which or shutil.which)(name)
    if not found:
        raise BackupError("%s not found on the PATH (install the PostgreSQL client package)" % name)
    return found


class DumpReader(object):
    """Reads a custom-format file with ``pg_restore`` (no server). ``tool`` maps a tool's name to its path,
    ``env`` is the tools' environment, ``clean`` shortens (and strips secrets from) a tool's message."""

    def __init__(self, tool, timeout, env=None, clean=None):
        self.tool = tool
        self.timeout = timeout
        self.env = env
        self.clean = clean or (lambda data: " ".join(_text(data).split())[-600:])

    def run(self, argv, what):
        try:
            proc = subprocess.run(argv, env=self.env, capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            raise BackupError("%s did not finish within %ss" % (what, self.timeout)) from exc
        if proc.returncode != 0:
            raise BackupError("%s failed (rc %d): %s" % (what, proc.returncode, self.clean(proc.stderr)))
        return proc.stdout.decode("utf-8", "replace")

    def verify(self, path, manifest, tables, count_rows):
        """Check the file; returns ``{bytes, sha256, toc_entries, tables, toc}``. Raises BackupError on any failure.
        ``count_rows`` counts each table's rows in the file and compares them with the manifest."""
        if not os.path.isfile(path):
            raise BackupError("no backup file at %s" % path)
        size = os.path.getsize(path)
        if size == 0:
            raise BackupError("the backup file %s is empty" % path)
        digest = sha256_of(path)
        if manifest and manifest.get("sha256") and manifest["sha256"] != digest:
            raise BackupError("the SHA-256 of %s does not match its manifest (the file changed)" % path)
        toc = parse_toc(self.run([self.tool("pg_restore"), "--list", path], "pg_restore --list"))
        if not toc:
            raise BackupError("pg_restore --list found no entries in %s" % path)
        manifest_tables = (manifest or {}).get("tables") or {}
        names = list(tables or manifest_tables.keys())
        data_entries = {(e["schema"], e["name"]) for e in toc if e["desc"] == "TABLE DATA"}
        result = {}
        for name in names:
            schema, table = split_table(name)
            if (schema, table) not in data_entries:
                raise BackupError("the backup holds no data of %s.%s" % (schema, table))
            result[name] = {"rows": (manifest_tables.get(name) or {}).get("rows")}
        if count_rows and names:
            counted = self.file_rows(path, names)
            for name in names:
                schema, table = split_table(name)
                file_rows = counted.get("%s.%s" % (schema, table), 0)
                result[name]["file_rows"] = file_rows
                want = result[name]["rows"]
                if want is not None and want != file_rows:
                    raise BackupError(
                        "%s: %d rows in the file, %d counted when the backup was taken" % (name, file_rows, want)
                    )
                if want is None:
                    result[name]["rows"] = file_rows
        return {"bytes": size, "sha256": digest, "toc_entries": len(toc), "tables": result, "toc": toc}

    def file_rows(self, path, names):
        argv = [self.tool("pg_restore"), "--data-only", "-f", "-"]
        for name in names:
            argv += ["--table", split_table(name)[1]]
        argv.append(path)
        proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        err = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))
        reader.start()
        try:
            counts = count_copy_rows(proc.stdout)
            proc.wait(timeout=self.timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join()
        if proc.returncode != 0:
            message = self.clean(b"".join(err))
            raise BackupError("pg_restore --data-only failed (rc %d): %s" % (proc.returncode, message))
        return counts

    def verified(self, path, tables=(), count_rows=False, manifest=None):
        """What ``pg_backup state=verified`` returns (without ``changed``); raises BackupError."""
        where = manifest_path(path, manifest)
        data = read_manifest(where)
        checked = self.verify(path, data, list(tables or []), count_rows)
        return {
            "verified": True,
            "path": path,
            "manifest": where,
            "manifest_data": data,
            "bytes": checked["bytes"],
            "sha256": checked["sha256"],
            "toc_entries": checked["toc_entries"],
            "tables": checked["tables"],
        }


def _text(data):
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")


# --- what a host holds ------------------------------------------------------------------------------------------
def list_dumps(directory, pattern="*.dump"):
    """``{path, exists, uid, gid, count, newest}`` of a directory of dump files: its owner, the regular files whose
    name matches ``pattern`` (hidden ones and symlinks left out) and the newest (``path``, ``bytes``, ``mtime``,
    ``age_s``; ``{}`` when there is none). Never their content."""
    answer = {"path": directory, "exists": False, "uid": None, "gid": None, "count": 0, "newest": {}}
    try:
        info = os.stat(directory)
    except OSError:
        return answer
    if not os.path.isdir(directory):
        return answer
    answer.update(exists=True, uid=info.st_uid, gid=info.st_gid)
    found = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or not fnmatch.fnmatch(name, pattern):
            continue
        path = os.path.join(directory, name)
        try:
            stat = os.lstat(path)
        except OSError:
            continue  # removed meanwhile
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        found.append({"path": path, "bytes": stat.st_size, "mtime": stat.st_mtime})
    answer["count"] = len(found)
    if found:
        newest = max(found, key=lambda item: item["mtime"])
        answer["newest"] = dict(newest, age_s=round(time.time() - newest["mtime"]))
    return answer


def definition_digest(definition):
    """SHA-256 of a (JSON-like) definition in a canonical form: equal definitions, equal digests."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def service_digest(compose_file, service):
    """``{file, exists, defined, sha256, error}``: the digest of ``service``'s definition in a Compose file."""
    answer = {"file": compose_file, "exists": False, "defined": False, "sha256": None, "error": None}
    if not compose_file or not os.path.isfile(compose_file):
        return answer
    answer["exists"] = True
    try:
        import yaml
    except ImportError as exc:
        answer["error"] = {"kind": "missing_tool", "message": "PyYAML is missing: %s" % exc}
        return answer
    try:
        with open(compose_file, "r") as handle:
            document = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        answer["error"] = {"kind": "other", "message": "cannot read %s: %s" % (compose_file, type(exc).__name__)}
        return answer
    definition = ((document.get("services") or {}) if isinstance(document, dict) else {}).get(service)
    if definition is not None:
        answer.update(defined=True, sha256=definition_digest(definition))
    return answer


def backups_evidence(options, seconds):
    """The ``backups`` of the ``postgres`` evidence kind (see stack_evidence's option ``postgres.backups``)."""
    options = options or {}
    bin_dir = options.get("bin_dir") or None
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    reader = DumpReader(lambda name: find_tool(name, bin_dir), max(1, int(seconds)), env)
    answer = {}
    files = {}
    for path in options.get("files") or []:
        try:
            files[path] = reader.verified(path, options.get("tables") or [], bool(options.get("count_rows")))
        except (BackupError, OSError, ValueError) as exc:
            files[path] = {"verified": False, "failed": True, "path": path, "msg": " ".join(str(exc).split())[:600]}
    if options.get("files"):
        answer["files"] = files
    if options.get("directory"):
        listing = list_dumps(options["directory"], options.get("pattern") or "*.dump")
        newest = listing.get("newest") or {}
        listing["newest_verified"] = False
        listing["newest_error"] = None
        if newest and options.get("verify_newest"):
            try:
                reader.verify(newest["path"], None, [], False)
                listing["newest_verified"] = True
            except (BackupError, OSError) as exc:
                listing["newest_error"] = " ".join(str(exc).split())[:600]
        answer["directory"] = listing
    service = options.get("compose_service") or {}
    if service.get("file") and service.get("name"):
        answer["service"] = service_digest(service["file"], service["name"])
    return answer
