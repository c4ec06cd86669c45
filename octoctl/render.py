"""Output formats: ``table`` (for people), ``json`` (the RunReport model dump), ``yaml``, ``markdown``."""

from __future__ import annotations

import json
from typing import Any

import yaml

from octoctl.catalog import Catalog
from octoctl.models import Action, Change, Finding, ProcedureResult, RunReport, StackCheck, TargetResult
from octoctl.routing import Plan

FORMATS = ("table", "json", "yaml", "markdown", "html")

SYMBOLS = {"ok": "✔", "warning": "⚠", "problem": "✖", "unknown": "?"}
ASCII_SYMBOLS = {"ok": "ok", "warning": "!!", "problem": "XX", "unknown": "??"}
EXIT_MEANING = {
    0: "healthy, nothing left for a human",
    1: "a human is needed",
    2: "usage error",
    3: "environment problem",
    4: "octoctl error",
}


def _dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120).rstrip("\n")


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def describe_change(change: Change | None) -> str:
    """``key old -> new``, ``sql (rows N)`` or ``container op``."""
    if change is None:
        return ""
    if change.key is not None:
        return f"{change.key} {_value(change.old)} -> {_value(change.new)}"
    if change.sql is not None:
        rows = f" (rows {change.rows})" if change.rows is not None else ""
        return f"{change.sql}{rows}"
    if change.container is not None:
        return f"{change.container} {change.op or ''}".strip()
    extra = change.model_extra or {}
    return ", ".join(f"{k}={_value(v)}" for k, v in extra.items())


# --- run reports ---------------------------------------------------------------------------------


def render_report(report: RunReport, fmt: str, unicode: bool = True) -> str:
    if fmt == "html":  # the notification page, with the graph of its incident's alert (alerts_cli.py)
        from octoctl.alerts_cli import report_html

        return report_html(report)
    if fmt == "json":
        return report.model_dump_json(indent=2)
    if fmt == "yaml":
        return _dump(report.model_dump(mode="json"), "yaml")
    if fmt == "markdown":
        return _markdown_report(report)
    return _table_report(report, SYMBOLS if unicode else ASCII_SYMBOLS)


def _finding_line(finding: Finding, symbols: dict[str, str]) -> str:
    parts = [f"{symbols[finding.status]} {finding.check}"]
    if finding.title:
        parts.append(finding.title)
    seen = f"observed {_value(finding.observed)}"
    if finding.expected is not None:
        seen += f", expected {_value(finding.expected)}"
    parts.append(seen)
    if finding.scenario:
        parts.append(f"[scenario {finding.scenario}]")
    if finding.error is not None:
        parts.append(f"error {finding.error.kind}: {finding.error.message}")
    return "  ".join(parts)


def _action_line(action: Action) -> str:
    flags = [w for w, on in (("disruptive", action.disruptive), ("destructive", action.destructive)) if on]
    parts = [f"{action.status:<17}", action.title or action.id]
    change = describe_change(action.change)
    if change:
        parts.append(change)
    if action.scenario:
        parts.append(f"[scenario {action.scenario}]")
    if flags:
        parts.append("(" + ", ".join(flags) + ")")
    if action.outcome:
        parts.append(f"- {action.outcome}")
    if action.elapsed_s is not None:
        parts.append(f"({action.elapsed_s:.1f} s)")
    return "  ".join(parts)


def _procedure_table(result: ProcedureResult, symbols: dict[str, str], dry_run: bool = False) -> list[str]:
    verdict = result.verdict
    status = verdict.status.upper().replace("_", " ") if verdict else "?"
    head = f"  {result.procedure} ({result.phase}{', ' + result.platform if result.platform else ''}): {status}"
    lines = [head]
    if result.findings:
        lines.append("    findings:")
        lines += [f"      {_finding_line(f, symbols)}" for f in result.findings]
    holding = [s for s in result.scenarios if s.holds]
    if holding:
        lines.append("    scenarios that hold:")
        lines += [f"      {s.id}  {s.title}" + (f" - {s.reason}" if s.reason else "") for s in holding]
    elif result.scenarios:
        lines.append("    scenarios that hold: none")
    if result.actions:
        lines.append("    actions:")
        lines += [f"      {_action_line(a)}" for a in result.actions]
    if result.prevention is not None:
        if result.prevention.findings:
            lines.append("    prevention checks:")
            lines += [f"      {_finding_line(f, symbols)}" for f in result.prevention.findings]
        if result.prevention.actions:
            lines.append("    prevention actions:")
            lines += [f"      {_action_line(a)}" for a in result.prevention.actions]
    if result.verification is not None and not dry_run:
        word = "healthy" if result.verification.healthy else "NOT healthy"
        lines.append(f"    verification: {word}")
        lines += [f"      {_finding_line(f, symbols)}" for f in result.verification.findings if f.status != "ok"]
    if result.escalation.level is not None:
        reason = f" - {result.escalation.reason}" if result.escalation.reason else ""
        lines.append(f"    escalation: {result.escalation.level}{reason}")
    if verdict and verdict.reasons:
        lines.append("    why: " + "; ".join(verdict.reasons))
    return lines


def _target_table(target: TargetResult, symbols: dict[str, str], dry_run: bool = False) -> list[str]:
    lines = [f"{target.target}: {target.status.upper().replace('_', ' ')} (exit {target.exit_code})"]
    for error in target.errors:
        where = f"{error.procedure}: " if error.procedure else ""
        lines.append(f"  {symbols['problem']} {where}{error.kind}: {error.message}")
    if target.stack is not None:
        lines += _stack_lines(target.stack, symbols)
    for result in target.procedures:
        lines += _procedure_table(result, symbols, dry_run)
    return lines


def _stack_lines(stack: StackCheck, symbols: dict[str, str]) -> list[str]:
    """One line when every service is up; otherwise each that is not, and where to look."""
    if not stack.down and all(f.status == "ok" for f in stack.findings):
        return [f"  stack: {symbols['ok']} all {len(stack.findings)} services up"]
    lines = ["  stack: " + (f"DOWN: {', '.join(stack.down)} (octoctl fix service)" if stack.down else "")]
    lines += [f"    {_finding_line(f, symbols)}" for f in stack.findings if f.status != "ok"]
    return lines


def _table_report(report: RunReport, symbols: dict[str, str]) -> str:
    flags = [w for w, on in (("dry run", report.dry_run), ("approved", report.approve)) if on]
    if report.scenario:
        flags.append(f"scenario {report.scenario}")
    head = f"octoctl {report.command} - run {report.run_id}" + (f" ({', '.join(flags)})" if flags else "")
    lines = [head, f"inventory {report.inventory}" + (f" --limit {report.limit}" if report.limit else "")]
    if report.procedures:
        lines.append("procedures " + ", ".join(report.procedures))
    lines.append("")
    for target in report.targets:
        lines += _target_table(target, symbols, report.dry_run)
        lines.append("")
    for note in report.notes:
        lines.append(f"note: {note}")
    meaning = EXIT_MEANING.get(report.exit_code, "")
    lines.append(f"result: {report.status.replace('_', ' ')} (exit {report.exit_code}: {meaning})")
    return "\n".join(lines)


def _md_cell(value: Any) -> str:
    return _value(value).replace("|", "\\|").replace("\n", " ")


def _markdown_report(report: RunReport) -> str:
    out = [f"# octoctl {report.command}: run {report.run_id}", ""]
    out += [
        f"- status: **{report.status}** (exit {report.exit_code})",
        f"- inventory: `{report.inventory}`" + (f", limit `{report.limit}`" if report.limit else ""),
        f"- procedures: {', '.join(report.procedures) or '-'}",
        f"- dry run: {'yes' if report.dry_run else 'no'}, approved: {'yes' if report.approve else 'no'}"
        + (f", scenario {report.scenario}" if report.scenario else ""),
        f"- started {report.start.isoformat()}" + (f", ended {report.end.isoformat()}" if report.end else ""),
    ]
    out += [f"- note: {n}" for n in report.notes]
    for target in report.targets:
        out += ["", f"## {target.target}: {target.status} (exit {target.exit_code})"]
        for error in target.errors:
            out.append(f"- **{error.kind}**{' in ' + error.procedure if error.procedure else ''}: {error.message}")
        if target.stack is not None and target.stack.down:
            out.append(f"- **down**: {', '.join(target.stack.down)}")
        for result in target.procedures:
            verdict = result.verdict
            out += ["", f"### {result.procedure} ({result.phase}): {verdict.status if verdict else '?'}"]
            if result.findings:
                out += ["", "| status | check | observed | expected | scenario |", "|---|---|---|---|---|"]
                out += [
                    f"| {f.status} | {_md_cell(f.check)} | {_md_cell(f.observed)} | {_md_cell(f.expected)} "
                    f"| {_md_cell(f.scenario)} |"
                    for f in result.findings
                ]
            holding = [s for s in result.scenarios if s.holds]
            if holding:
                out += ["", "Scenarios that hold:", ""]
                out += [f"- {s.id} {s.title}" + (f": {s.reason}" if s.reason else "") for s in holding]
            if result.actions:
                out += ["", "| status | action | change | disruptive | outcome |", "|---|---|---|---|---|"]
                out += [
                    f"| {a.status} | {_md_cell(a.title or a.id)} | {_md_cell(describe_change(a.change) or '-')} "
                    f"| {'yes' if a.disruptive or a.destructive else 'no'} | {_md_cell(a.outcome or '-')} |"
                    for a in result.actions
                ]
            if result.verification is not None and not report.dry_run:
                out += ["", f"Verification: {'healthy' if result.verification.healthy else '**not healthy**'}"]
            if result.escalation.level is not None:
                out += ["", f"Escalation: **{result.escalation.level}** {result.escalation.reason}".rstrip()]
            if verdict and verdict.reasons:
                out += ["", "Why: " + "; ".join(verdict.reasons)]
    return "\n".join(out)


# --- catalog and plans ---------------------------------------------------------------------------


def catalog_data(catalog: Catalog, available: dict[str, bool] | None = None) -> list[dict[str, Any]]:
    rows = []
    for p in catalog.procedures:
        row: dict[str, Any] = {
            "rank": p.rank,
            "procedure": p.name,
            "role": p.fqcn,
            "title": p.title,
            "level": p.level,
            "aliases": list(p.aliases),
            "alerts": list(p.alerts),
            "symptoms": list(p.symptoms),
            "scenarios": [{"id": s.id, "title": s.title, "fix": s.fix} for s in p.scenarios],
        }
        if available is not None:
            row["available"] = available.get(p.name, False)
        rows.append(row)
    return rows


# The seed's quick reference ("Common Commands"), as octoctl commands: (seed, octoctl)
QUICK_REFERENCE: tuple[tuple[str, str], ...] = (
    ("curl http://localhost:8000/health; docker stats; curl .../metrics",
     "octoctl health [--watch 10]   every service: state, restarts, /health, readiness, key metrics"),
    ("docker compose logs -f [service]", "octoctl logs SERVICE [--since 10m] [--grep RE] [--tail N]   masked"),
    ("docker compose restart [service]", "octoctl restart SERVICE [--approve]   then verified healthy"),
    ("docker compose exec postgres psql -U octollm", "octoctl shell postgres [-c SQL]"),
    ("docker compose exec redis redis-cli", "octoctl shell redis [COMMAND]"),
    ("kubectl rollout history deployment/SERVICE",
     "octoctl history SERVICE [--format json]   revisions (Compose: recorded by octoctl)"),
    ("kubectl rollout undo deployment/SERVICE [--to-revision=N]",
     "octoctl rollback SERVICE [--to-revision N] [--dry-run] [--approve]   then verified"),
    ("emergency: docker compose down; docker compose up -d", "octoctl emergency restart [--approve]   verified "
     "backup, ordered stop and start, then a diagnosis"),
)


def quick_reference_lines() -> list[str]:
    return ["quick reference (the seed's common commands):"] + [f"  {ours}" for _, ours in QUICK_REFERENCE]


def render_catalog(catalog: Catalog, fmt: str, available: dict[str, bool] | None = None) -> str:
    rows = catalog_data(catalog, available)
    if fmt in ("json", "yaml"):
        return _dump(rows, fmt)
    if fmt == "markdown":
        out = ["| rank | procedure | level | alerts | symptoms | scenarios |", "|---|---|---|---|---|---|"]
        for r in rows:
            scenarios = "; ".join(f"{s['id']} {s['title']} ({s['fix']})" for s in r["scenarios"])
            out.append(
                f"| {r['rank']} | {r['procedure']} | {r['level']} | {', '.join(r['alerts']) or '-'} "
                f"| {'; '.join(r['symptoms'])} | {scenarios} |"
            )
        out += ["", "| seed | octoctl |", "|---|---|"]
        out += [f"| `{seed}` | `{ours.split('   ')[0]}` |" for seed, ours in QUICK_REFERENCE]
        return "\n".join(out)
    out = []
    for r in rows:
        state = "" if "available" not in r else ("" if r["available"] else "  (not yet available)")
        out.append(f"{r['rank']:>2}. {r['procedure']} - {r['title']} [{r['level']}]{state}")
        out.append(f"    names:     {', '.join([r['procedure'], *r['aliases']])}")
        if r["alerts"]:
            out.append(f"    alerts:    {', '.join(r['alerts'])}")
        out.append(f"    symptoms:  {'; '.join(r['symptoms'])}")
        for s in r["scenarios"]:
            out.append(f"    scenario {s['id']}: {s['title']} ({s['fix']})")
    out.append("")
    out.append("fix: auto = fixed without asking; disruptive = fixed after approval; report = a human acts")
    out.append("")
    out += quick_reference_lines()
    return "\n".join(out)


NOT_CONFIDENT = (
    "no procedure matches %s with confidence: every procedure is diagnosed, and `octoctl fix` applies only what "
    "needs no approval (name a procedure, or approve the stored plan, for the rest)"
)


def plan_data(plan: Plan, limit: int = 5) -> dict[str, Any]:
    shown = [m for m in plan.matches if m.selected] + [m for m in plan.matches if not m.selected and m.score > 0]
    return {
        "texts": plan.texts,
        "confident": plan.confident,
        "unmatched": plan.unmatched,
        "selected": [p.name for p in plan.selected],
        "matches": [
            {
                "procedure": m.procedure.name,
                "score": m.score,
                "selected": m.selected,
                "rank": m.procedure.rank,
                "level": m.procedure.level,
                "reasons": m.reasons,
            }
            for m in shown[: max(limit, len(plan.selected))]
        ],
    }


def render_plan(plan: Plan, fmt: str) -> str:
    data = plan_data(plan)
    if fmt in ("json", "yaml"):
        return _dump(data, fmt)
    if fmt == "markdown":
        out = ["| selected | procedure | score | reasons |", "|---|---|---|---|"]
        out += [
            f"| {'yes' if m['selected'] else ''} | {m['procedure']} | {m['score']:.0f} | {'; '.join(m['reasons'])} |"
            for m in data["matches"]
        ]
        out += ["", "Runs in this order: " + ", ".join(data["selected"])]
        if not plan.confident:
            out += ["", NOT_CONFIDENT % ", ".join(repr(t) for t in plan.unmatched)]
        return "\n".join(out)
    out = [f"{'':2}{'procedure':<22}{'score':>6}  reasons"]
    for m in data["matches"]:
        mark = "*" if m["selected"] else " "
        out.append(f"{mark} {m['procedure']:<22}{m['score']:>6.0f}  {'; '.join(m['reasons'])}")
    out += ["", "runs in this order (root causes first): " + ", ".join(data["selected"])]
    if not plan.confident:
        out += [NOT_CONFIDENT % ", ".join(repr(t) for t in plan.unmatched)]
    return "\n".join(out)
