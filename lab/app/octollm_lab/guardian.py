"""guardian-arm's checks: blocked commands, PII, blocked sources (the seed's Security Violations).

| variable | default | meaning |
|---|---|---|
| GUARDIAN_BLOCKED_FILE | /etc/octollm/guardian/blocked_commands.txt | one pattern a line, see below |
| GUARDIAN_BLOCKED_SOURCES | "" | comma list of sources refused with 403 |
| GUARDIAN_BLOCKED_SOURCES_FILE | /etc/octollm/guardian/blocked_sources.txt | one source a line, added to the above |
| GUARDIAN_AUDIT_LOG | false | an "audit ..." line for every check |
| GUARDIAN_REDACT_LOGS | false | mask PII in log lines; FAULT while false: the matched PII is written to the log |

Blocked-command patterns: `#` starts a comment; `re:` prefix for a regex, else a case-insensitive
substring. Files are re-read on SIGHUP and on POST /api/v1/reload.
Metric: security_violations_total{type}, type one of blocked_command, pii_email, pii_credit_card,
pii_api_key, unauthorized_source.
"""

import hashlib
import re
import threading

from prometheus_client import Counter

from .common import read_text_file

SECURITY_VIOLATIONS = Counter("security_violations_total", "Security violations detected", ["type"])

PII_PATTERNS = {
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "credit_card": re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"),
    "api_key": re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16})\b"),
}


def luhn_valid(number):
    digits = [int(ch) for ch in number if ch.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def find_pii(text):
    """[(pii_type, matched_text)], card numbers only when they pass Luhn."""
    found = []
    for pii_type, pattern in PII_PATTERNS.items():
        for match in pattern.finditer(text):
            value = match.group(0)
            if pii_type == "credit_card" and not luhn_valid(value):
                continue
            found.append((pii_type, value))
    return found


def mask(value, pii_type):
    if pii_type == "email":
        local, _, domain = value.partition("@")
        return local[:1] + "***@" + domain
    if pii_type == "credit_card":
        digits = re.sub(r"\D", "", value)
        return "*" * (len(digits) - 4) + digits[-4:]
    return value[:3] + "***" + value[-4:]


def redact(text):
    """Replace every PII match in text with [REDACTED:<type>]."""
    for pii_type, value in find_pii(text):
        text = text.replace(value, f"[REDACTED:{pii_type}]")
    return text


def parse_lines(content):
    return [line.strip() for line in content.splitlines() if line.strip() and not line.strip().startswith("#")]


class BlockList:
    def __init__(self, lines=()):
        self.patterns = list(lines)
        self._compiled = [re.compile(p[3:], re.IGNORECASE) if p.startswith("re:") else p.lower()
                          for p in self.patterns]

    def match(self, text):
        lowered = text.lower()
        for pattern, compiled in zip(self.patterns, self._compiled, strict=False):
            if isinstance(compiled, str):
                if compiled in lowered:
                    return pattern
            elif compiled.search(text):
                return pattern
        return None


class Guardian:
    def __init__(self, log, blocked_file, sources_file="", sources=(), audit=False, redact_logs=False):
        self.log = log
        self.blocked_file = blocked_file
        self.sources_file = sources_file
        self.env_sources = list(sources)
        self.audit = audit
        self.redact_logs = redact_logs
        self.blocklist = BlockList()
        self.blocked_sources = set(self.env_sources)
        self._lock = threading.Lock()
        self.reload()

    def reload(self):
        blocklist = BlockList(parse_lines(read_text_file(self.blocked_file)))
        sources = set(self.env_sources) | set(parse_lines(read_text_file(self.sources_file)))
        with self._lock:
            self.blocklist, self.blocked_sources = blocklist, sources
        self.log.info("guardian rules reloaded", blocked_patterns=len(blocklist.patterns),
                      blocked_sources=len(sources), file=self.blocked_file)
        return {"blocked_patterns": len(blocklist.patterns), "blocked_sources": len(sources)}

    def source_blocked(self, source):
        with self._lock:
            blocked = source in self.blocked_sources
        if blocked:
            SECURITY_VIOLATIONS.labels("unauthorized_source").inc()
            self.log.warning("unauthorized attempt", source=source)
        return blocked

    def check(self, text, source):
        """Return {"allowed": bool, "violations": [...]} (PII masked in the answer)."""
        violations = []
        with self._lock:
            pattern = self.blocklist.match(text)
        if pattern is not None:
            SECURITY_VIOLATIONS.labels("blocked_command").inc()
            self.log.warning("security violation", type="blocked_command", source=source,
                             command=redact(text) if self.redact_logs else text, pattern=pattern)
            violations.append({"type": "blocked_command", "pattern": pattern})
        for pii_type, value in find_pii(text):
            SECURITY_VIOLATIONS.labels("pii_" + pii_type).inc()
            self.log.warning("PII detected", type=pii_type, source=source,
                             value=mask(value, pii_type) if self.redact_logs else value)
            violations.append({"type": "pii", "pii_type": pii_type, "value": mask(value, pii_type)})
        allowed = pattern is None
        if self.audit:
            self.log.info("audit check", source=source, allowed=allowed, violations=len(violations),
                          text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16])
        return {"allowed": allowed, "violations": violations, "source": source}
