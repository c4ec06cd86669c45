# -*- coding: utf-8 -*-
# Copyright: OctoLLM operations
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""llm_api on Kubernetes: the Compose judgement, with the settings, the log and the key check from the cluster.

- The client's LLM settings (the deployment's names of them) are keys of the ConfigMap the orchestrator takes its
  environment from (``envFrom``; what a restart brings), in place of the Compose side's ``docker exec env``.
- The orchestrator's log (429, 503, timeout and auth lines, the rate-limit headers it logged) is its pods' log,
  read through the API (PII masked by the collector).
- The deployment's key is checked at the provider's /v1/models with the key the deployment's Secret holds (the
  inventory's header set, read from that Secret; the key never enters the evidence): the status stands in for
  the Compose side's probe from inside the container.

Fixes: A, B and C patch the ConfigMap (``llm_api.<S>.*`` with ``_apply: set_configmap``), D writes the new key
into the Secret (``rotate_secret``: ``data`` base64, from the file or environment variable the operator names);
each is disruptive, because the consumers (the orchestrator) only read them on start: one rollout restart of
the consumers follows every applied change (``restartedAt``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.octollm.remediation.plugins.plugin_utils import kubernetes as k8s
from ansible_collections.octollm.remediation.plugins.plugin_utils import llm_api as la
from ansible_collections.octollm.remediation.plugins.plugin_utils.judging import gated
from ansible_collections.octollm.remediation.plugins.plugin_utils.results import escalation, finding, unknown

PREFIX = "llm_api_"
READS = ("configmap", "workload", "pods", "events")


def _settings(settings):
    return dict(settings or {})


def configmap_ref(s):
    return "configmap/%s/%s" % (s["namespace"], s["k8s_configmap"])


def secret_ref(s):
    return "secret/%s/%s" % (s["namespace"], s["k8s_secret"])


def _first(read):
    return read["items"][0] if read["items"] else None


def with_cluster(evidence, reads, s):
    """The evidence in the Compose shape: the ConfigMap's LLM settings as the settings probe, the pods' log as the
    orchestrator's, the key status of the primary's /v1/models (asked with the Secret's key) as the key probe."""
    evidence = copy.deepcopy(evidence or {})
    configmap = _first(reads["configmap"])
    if configmap is not None:
        data = configmap.get("data") or {}
        names = sorted({name for name in la.setting_names(s).values() if name})
        text = "\n".join("%s=%s" % (name, data[name]) for name in names if name in data)
        settings_probe = {"name": la.EXEC_SETTINGS, "ok": True, "exit_code": 0, "output": text}
    else:
        settings_probe = {
            "name": la.EXEC_SETTINGS,
            "ok": False,
            "exit_code": None,
            "error": reads["configmap"]["error"] or {"kind": "other", "message": "%s not found" % configmap_ref(s)},
        }
    primary = (((evidence.get("http") or {}).get("probes") or {}).get(la.PROBE_PRIMARY)) or {}
    status = primary.get("status")
    if status in (200, 401, 403):
        key_probe = {"name": la.EXEC_KEY, "ok": True, "exit_code": 0, "output": str(status)}
    else:
        key_probe = {
            "name": la.EXEC_KEY,
            "ok": False,
            "exit_code": None,
            "error": primary.get("error")
            or ((evidence.get("http") or {}).get("error"))
            or {"kind": "other", "message": "the provider answered %s" % status},
        }
    log = reads["pods"]["log"] or {"lines": [], "pattern_counts": {}, "error": reads["pods"]["error"]}
    evidence["containers"] = {
        "ok": True,
        "containers": [],
        "logs": {s["service"]: log},
        "exec_probes": [settings_probe, key_probe],
    }
    return evidence


def check_config_refs(reads, s, check="k8s.llm_config_refs"):
    """The orchestrator takes its environment from the ConfigMap and the key from the Secret that the fixes
    change (otherwise a patch does nothing)."""
    title = "%s/%s reads its LLM settings from %s and its key from %s" % (
        la.WORKLOAD_KIND,
        s["k8s_workload"],
        configmap_ref(s),
        secret_ref(s),
    )
    expected = "envFrom configMapRef %s; %s from secret %s" % (s["k8s_configmap"], s["k8s_secret_key"], s["k8s_secret"])
    error = reads["workload"]["error"]
    if error:
        return unknown(check, title, expected, error)
    workload = _first(reads["workload"])
    if workload is None:
        return finding(check, title, "warning", "no %s/%s" % (la.WORKLOAD_KIND, s["k8s_workload"]), expected)
    containers = ((workload.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    config, secret = False, False
    for container in containers:
        for source in container.get("envFrom") or []:
            config = config or (source.get("configMapRef") or {}).get("name") == s["k8s_configmap"]
            secret = secret or (source.get("secretRef") or {}).get("name") == s["k8s_secret"]
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            secret = secret or (env.get("name") == s["k8s_secret_key"] and ref.get("name") == s["k8s_secret"])
    missing = [name for name, ok in ((configmap_ref(s), config), (secret_ref(s), secret)) if not ok]
    evidence = {"configmap": config, "secret": secret}
    if missing:
        return finding(check, title, "warning", "not from: %s" % ", ".join(missing), expected, evidence)
    return finding(check, title, "ok", "both", expected, evidence)


def check_pods(reads, s):
    title = "The %s pods are running and ready" % s["k8s_app"]
    expected = "all Running and Ready, no CrashLoopBackOff"
    error = reads["pods"]["error"]
    if error:
        return unknown("k8s.llm_client_pods", title, expected, error)
    pods = k8s.pods_summary(reads["pods"]["items"])
    events = k8s.events_summary(
        reads["events"]["items"], names={pod["name"] for pod in pods} | {s["k8s_workload"]}, limit=5
    )
    evidence = {
        "pods": [{key: pod[key] for key in ("name", "phase", "ready", "restarts")} for pod in pods],
        "events": events,
        "log_error": (reads["pods"]["log"] or {}).get("error"),
    }
    troubled = {pod["name"]: k8s.pod_trouble(pod) for pod in pods if k8s.pod_trouble(pod)}
    if not pods:
        return finding("k8s.llm_client_pods", title, "warning", "no pod with app=%s" % s["k8s_app"], expected, evidence)
    if troubled:
        observed = "; ".join("%s: %s" % (name, ", ".join(reasons)) for name, reasons in sorted(troubled.items()))
        return finding("k8s.llm_client_pods", title, "warning", observed, expected, evidence)
    return finding("k8s.llm_client_pods", title, "ok", "%d ready" % len(pods), expected, evidence)


def _base_settings(s):
    return dict(s, env_file=configmap_ref(s), secrets_file=secret_ref(s), key_file=None)


def diagnose(evidence, settings=None, previous=None, recovering=()):
    """llm_api's diagnosis from the cluster's settings, log and Secret key, plus the orchestrator pods."""
    s = _settings(settings)
    reads = k8s.named_reads(evidence, PREFIX, READS)
    result = la.diagnose(with_cluster(evidence, reads, s), _base_settings(s), previous, recovering)
    findings = result["findings"] + [check_pods(reads, s), check_config_refs(reads, s)]
    context = dict(result["context"], configmap=configmap_ref(s), secret=secret_ref(s))
    return {
        "findings": findings,
        "scenarios": result["scenarios"],
        "escalation": escalation(findings, s["escalation_level"], phase="diagnose"),
        "context": context,
    }


def _restart_text(s):
    return ", ".join("%s/%s" % (la.WORKLOAD_KIND, name) for name in s["k8s_restart"])


def plan(diagnosis, settings=None):
    """llm_api's plan with the settings going to the ConfigMap and the key to the Secret, then a rollout restart
    of the consumers; gated by approval (each is disruptive)."""
    s = _settings(settings)
    raw = la.plan(diagnosis, dict(_base_settings(s), dry_run=False, approve=True))
    actions = []
    for item in raw:
        item = dict(item)
        change = dict(item.get("change") or {})
        if item.get("_apply") == "set_env":
            change.update(
                file=configmap_ref(s),
                configmap=s["k8s_configmap"],
                restart=_restart_text(s),
                op="ConfigMap patch, then rollout restart (%s)" % k8s.RESTARTED_AT,
            )
            change.pop("container", None)
            item.update(
                change=change,
                _apply="set_configmap",
                outcome=item["outcome"].replace(
                    "and recreate %s" % s["service"], "then a rollout restart of %s" % _restart_text(s)
                ),
            )
        elif item.get("_apply") == "rotate_key":
            change.update(
                file=secret_ref(s),
                secret=s["k8s_secret"],
                key=s["k8s_secret_key"],
                restart=_restart_text(s),
                op="Secret patch (data, base64), then rollout restart (%s)" % k8s.RESTARTED_AT,
            )
            change.pop("also", None)
            change.pop("container", None)
            item.update(
                change=change,
                resource="%s:%s" % (secret_ref(s), s["k8s_secret_key"]),
                _apply="rotate_secret",
                outcome="check the new key at the provider, write it to %s (%s) and roll out %s"
                % (secret_ref(s), s["k8s_secret_key"], _restart_text(s)),
            )
        actions.append(item)
    return gated(actions, s)


def prevention(evidence, settings=None):
    """llm_api's prevention checks from the ConfigMap and Prometheus, plus the orchestrator's ConfigMap and Secret
    references."""
    s = _settings(settings)
    reads = k8s.named_reads(evidence, PREFIX, READS)
    result = la.prevention(with_cluster(evidence, reads, s), _base_settings(s))
    findings = result["findings"] + [check_config_refs(reads, s, "prevent.k8s.llm_config_refs")]
    return {"findings": findings, "actions": result["actions"], "context": {"configmap": configmap_ref(s)}}
