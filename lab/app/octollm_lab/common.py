"""Settings and logging shared by every lab service.

Every setting is an environment variable with a default. A secret NAME can also be
given as a file path in NAME_FILE (the lab keeps its secrets in files).

- SETTINGS_PREFIX (default ""): every setting above and in the service's modules is read as PREFIX + NAME
  (`ORCHESTRATOR_`).
- METRICS_PREFIX (default ""): the service's own metrics are exported as PREFIX + name (`orchestrator_`;
  `octollm_x` -> PREFIX + `x`).
- LAB_ENDPOINTS (default full): `seed` offers only the seed's endpoints (no /debug/*, route scoring, arms list, cache
  warm, reload, no pool figures in /health); the leak switch is SIGUSR1 instead.

Log lines go to stdout, one per event, in a plain structured form that diagnosis
greps for:

    2026-01-02T03:04:05.678Z INFO orchestrator routing task_id=task-1 arm=coder-arm score=30
"""

import os
import sys
import threading
import time

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}


def settings_prefix():
    return os.environ.get("SETTINGS_PREFIX", "")


def seed_endpoints_only():
    """True when the service offers only the seed's endpoints (LAB_ENDPOINTS=seed)."""
    return os.environ.get("LAB_ENDPOINTS", "full").strip().lower() == "seed"


def metric_name(name):
    """The exported name of one of the service's metrics, under METRICS_PREFIX (the lab's own `octollm_` dropped)."""
    prefix = os.environ.get("METRICS_PREFIX", "")
    if not prefix:
        return name
    return prefix + (name[len("octollm_"):] if name.startswith("octollm_") else name)


def env_str(name, default=""):
    value = os.environ.get(settings_prefix() + name)
    return default if value is None or value == "" else value


def env_int(name, default):
    return int(env_str(name, str(default)))


def env_float(name, default):
    return float(env_str(name, str(default)))


def env_bool(name, default=False):
    value = env_str(name, "")
    if value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name, default=()):
    value = env_str(name, "")
    if value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_secret(name, default=""):
    """NAME, else the content of the file named by NAME_FILE, else default."""
    value = env_str(name, "")
    if value:
        return value
    path = env_str(name + "_FILE", "")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            pass
    return default


def read_text_file(path, default=""):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return default


def format_value(value):
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if text == "" or any(ch in text for ch in ' "=\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return '"' + escaped + '"'
    return text


class Logger:
    """One line per event: time LEVEL service message key=value ..."""

    _lock = threading.Lock()

    def __init__(self, service, level=None, stream=None):
        self.service = service
        self.level = LEVELS.get((level or env_str("LOG_LEVEL", "info")).lower(), 20)
        self.stream = stream or sys.stdout

    def log(self, level_name, message, **fields):
        if LEVELS[level_name] < self.level:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        parts = [stamp, level_name.upper(), self.service, message]
        parts += [f"{key}={format_value(value)}" for key, value in fields.items()]
        line = " ".join(parts) + "\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()

    def debug(self, message, **fields):
        self.log("debug", message, **fields)

    def info(self, message, **fields):
        self.log("info", message, **fields)

    def warning(self, message, **fields):
        self.log("warning", message, **fields)

    def error(self, message, **fields):
        self.log("error", message, **fields)


def service_name(default):
    return env_str("SERVICE_NAME", default)
