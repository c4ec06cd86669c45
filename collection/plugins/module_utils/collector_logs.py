# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ``logs`` evidence kind: matching lines of log files on the host that runs the module.

Each source is a path or glob with a regex and a line budget. Only the last ``max_bytes`` of a file are read
(the newest lines), the line numbers stay absolute (the newlines of the skipped head are counted, in chunks,
while the deadline allows), files are read concurrently, and every returned line passes through the PII
redaction of ``module_utils/redact.py`` so that a finding never carries an e-mail address, a card number or
an API key. Named ``patterns`` are counted over every scanned line of every source.

``listings`` lists files without reading them (path, size, modification time): the backups a retention policy
covers, for instance.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import glob
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.octollm.remediation.plugins.module_utils.evidence import (
    Collector,
    CollectorError,
    error_of,
    register,
    remaining,
)
from ansible_collections.octollm.remediation.plugins.module_utils.redact import (
    DEFAULT_PII,
    redact_pii,
    validate_kinds,
)

CHUNK = 1 << 20

SOURCE_OPTIONS = dict(
    path=dict(type="str", required=True),
    name=dict(type="str"),
    pattern=dict(type="str", default="."),
    max_lines=dict(type="int", default=50),
    ignore_case=dict(type="bool", default=False),
)


def count_newlines(handle, end, deadline):
    """Newlines in the first ``end`` bytes (None when the deadline comes first)."""
    handle.seek(0)
    total = 0
    left = end
    while left > 0:
        if remaining(deadline, 0) < 0.5:
            return None
        chunk = handle.read(min(CHUNK, left))
        if not chunk:
            break
        total += chunk.count(b"\n")
        left -= len(chunk)
    return total


def scan_file(path, regex, named, budget, max_bytes, line_max, kinds, deadline):
    """The matching lines (newest ``budget`` of them) of one file, with counts."""
    size = os.path.getsize(path)
    start = max(0, size - max_bytes)
    with open(path, "rb") as handle:
        first_line = 1
        if start:
            handle.seek(start)
            data = handle.read(size - start)
            cut = data.find(b"\n")  # drop the partial first line
            data = data[cut + 1 :] if cut >= 0 else b""
            skipped = count_newlines(handle, start, deadline)
            first_line = skipped + 1 + (1 if cut >= 0 else 0) if skipped is not None else None
        else:
            data = handle.read()
    counts = {key: 0 for key in named}
    matches = []
    match_count = 0
    lines = data.decode("utf-8", "replace").splitlines()
    for index, line in enumerate(lines):
        for key, pattern in named.items():
            if pattern.search(line):
                counts[key] += 1
        if regex.search(line):
            match_count += 1
            matches.append((first_line + index if first_line is not None else None, line))
    kept = matches[-budget:] if budget > 0 else []
    redactions = {}
    out = []
    for number, line in kept:
        clean = redact_pii(line, kinds, redactions)[0]
        if len(clean) > line_max:
            clean = clean[: line_max - 3] + "..."
        out.append({"file": path, "line": number, "text": clean})
    return {
        "file": path,
        "size_bytes": size,
        "mtime": round(os.path.getmtime(path), 3),
        "scanned_bytes": size - start,
        "partial": start > 0,
        "lines_scanned": len(lines),
        "match_count": match_count,
        "matches": out,
        "pattern_counts": counts,
        "redactions": redactions,
    }


def list_files(spec):
    """One listing: the regular files (not hidden, symlinks not followed) in ``spec['paths']`` whose name matches
    one of ``spec['patterns']`` (globs, default every name), with their size and modification time; never their
    content. A path that does not exist is listed under ``missing``, one that cannot be read under ``errors``."""
    answer = {"files": [], "count": 0, "truncated": False, "missing": [], "errors": {}, "error": None}
    spec = spec if isinstance(spec, dict) else {}
    paths, patterns = spec.get("paths"), spec.get("patterns") or ["*"]
    if not paths:
        answer["error"] = {"kind": "other", "message": "a listing needs paths (and patterns)"}
        return answer
    paths = paths if isinstance(paths, list) else [paths]
    patterns = patterns if isinstance(patterns, list) else [patterns]
    cap = int(spec.get("max_files") or 1000)

    def failed(exc):
        where = getattr(exc, "filename", None) or "?"
        if isinstance(exc, PermissionError):
            answer["errors"][where] = {"kind": "auth", "message": "cannot list %s (permission denied)" % where}
        else:
            answer["errors"][where] = error_of(exc)

    for top in paths:
        top = os.path.expanduser(str(top))
        if not os.path.isdir(top):
            answer["missing"].append(top)
            continue
        for directory, subdirs, names in os.walk(top, onerror=failed):
            subdirs[:] = sorted(sub for sub in subdirs if not sub.startswith(".")) if spec.get("recurse") else []
            for name in sorted(names):
                if name.startswith(".") or not any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                    continue
                path = os.path.join(directory, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue  # removed meanwhile
                if not stat.S_ISREG(info.st_mode):
                    continue
                if len(answer["files"]) >= cap:
                    answer["truncated"] = True
                    break
                answer["files"].append({"path": path, "size_bytes": info.st_size, "mtime": info.st_mtime})
    answer["count"] = len(answer["files"])
    answer["listed_at"] = time.time()
    return answer


@register
class LogsCollector(Collector):
    kind = "logs"
    SECRETS = ()
    OPTIONS = dict(
        sources=dict(type="list", elements="dict", default=[], options=SOURCE_OPTIONS),
        patterns=dict(type="dict", default={}),
        redact=dict(type="list", elements="str", default=list(DEFAULT_PII)),
        max_bytes=dict(type="int", default=8 * 1024 * 1024),
        max_files=dict(type="int", default=20),
        line_max_chars=dict(type="int", default=400),
        listings=dict(type="dict", default={}),
    )

    def _opt(self, name):
        value = self.options.get(name)
        return self.OPTIONS[name].get("default") if value is None else value

    def collect(self, deadline):
        try:
            kinds = validate_kinds(self._opt("redact"))
            named = {key: re.compile(value) for key, value in (self._opt("patterns") or {}).items()}
        except (ValueError, re.error) as exc:
            raise CollectorError("other", "invalid logs options: %s" % exc) from exc
        result = {"sources": {}, "pattern_counts": {key: 0 for key in named}, "redactions": {}}
        listings = self._opt("listings") or {}
        if listings:
            result["listings"] = {name: list_files(spec) for name, spec in sorted(listings.items())}
        jobs = []
        for source in self._opt("sources") or []:
            name = source.get("name") or source["path"]
            if name in result["sources"]:
                continue
            entry = {
                "path": source["path"],
                "files": [],
                "match_count": 0,
                "lines": [],
                "truncated": False,
                "error": None,
            }
            result["sources"][name] = entry
            try:
                regex = re.compile(source.get("pattern") or ".", re.IGNORECASE if source.get("ignore_case") else 0)
            except re.error as exc:
                entry["error"] = {"kind": "other", "message": "invalid pattern: %s" % exc}
                continue
            path = os.path.expanduser(source["path"])
            files = sorted(glob.glob(path), key=lambda f: (os.path.getmtime(f) if os.path.exists(f) else 0, f))
            files = [f for f in files if os.path.isfile(f)]
            if not files:
                entry["error"] = {"kind": "other", "message": "no file matches %s" % source["path"]}
                continue
            if len(files) > int(self._opt("max_files")):
                entry["truncated"] = True
                files = files[-int(self._opt("max_files")) :]  # the newest
            for path_ in files:
                jobs.append((name, path_, regex, int(source.get("max_lines") or 0)))
        if not jobs:
            return result
        pool = ThreadPoolExecutor(max_workers=min(4, len(jobs)))
        try:
            futures = [
                (
                    name,
                    path_,
                    budget,
                    pool.submit(
                        scan_file,
                        path_,
                        regex,
                        named,
                        budget,
                        int(self._opt("max_bytes")),
                        max(40, int(self._opt("line_max_chars"))),
                        kinds,
                        deadline,
                    ),
                )
                for name, path_, regex, budget in jobs
            ]
            for name, path_, _budget, future in futures:
                entry = result["sources"][name]
                try:
                    scanned = future.result(timeout=remaining(deadline))
                except Exception as exc:
                    entry["files"].append({"file": path_, "error": error_of(exc)})
                    if isinstance(exc, PermissionError):
                        entry["error"] = {"kind": "auth", "message": "cannot read %s (permission denied)" % path_}
                    continue
                entry["match_count"] += scanned["match_count"]
                entry["lines"].extend(scanned.pop("matches"))
                entry["files"].append(scanned)
                for key, count in scanned["pattern_counts"].items():
                    result["pattern_counts"][key] += count
                for key, count in scanned["redactions"].items():
                    result["redactions"][key] = result["redactions"].get(key, 0) + count
            for source in self._opt("sources") or []:
                name = source.get("name") or source["path"]
                entry = result["sources"][name]
                budget = int(source.get("max_lines") or 0)
                if len(entry["lines"]) > budget:
                    entry["lines"] = entry["lines"][-budget:] if budget else []
                    entry["truncated"] = True
                elif entry["match_count"] > len(entry["lines"]):
                    entry["truncated"] = True
        finally:
            pool.shutdown(wait=False)
        result["scanned_at"] = time.time()
        return result
