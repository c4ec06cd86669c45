"""Write a procedure role's entry files (tasks/{main,diagnose,resolve,prevent}.yml) that enter the shared flow.

    python3 scripts/procedure_entry_points.py ROLE LABEL     (LABEL: the prefix of its task names, e.g. Cache)
"""

import sys
from pathlib import Path

role, label = sys.argv[1], sys.argv[2]
tasks = Path("roles") / role / "tasks"
for phase in ("diagnose", "resolve", "prevent"):
    (tasks / f"{phase}.yml").write_text(f"""---
# Entry point "{phase}": the shared flow (octollm.remediation._common) for this procedure.
- name: {label} | {phase.upper()} | run the shared flow
  ansible.builtin.include_role:
    name: octollm.remediation._common
    tasks_from: {phase}
  vars:
    _common_procedures: [{role}]
""")
(tasks / "main.yml").write_text(f"""---
# Entry point "main": the phase in octollm_phase (diagnose by default), through the shared flow.
- name: {label} | MAIN | run the phase through the shared flow
  ansible.builtin.include_role:
    name: octollm.remediation._common
  vars:
    _common_procedures: [{role}]
    _common_phase: "{{{{ octollm_phase | default('diagnose') }}}}"
""")
