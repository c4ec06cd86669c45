"""Faults of the disk: the backups volume (a sized tmpfs mounted on the state dir's ``backups/``) fills up."""

from __future__ import annotations

import os
import time
from typing import Any

from octollm_labctl.errors import Kind, LabError
from octollm_labctl.faults.base import Fault
from octollm_labctl.lab import Lab, run

COMPONENT = "disk"

# ---- disk-fill: the backups volume (a sized tmpfs) fills up with backups older than the retention -------
DISK_FILL_MB = 48
DISK_FILL_OLD = 7  # files of 6 MB, 30 days old
DISK_FILL_DEVICE = "octollm-fault-disk"


def _disk_fill_inject(lab: Lab, target: str | None) -> dict[str, Any]:
    path = lab.state / "backups"
    path.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(path):
        raise LabError(f"{path} is already a mount point (disk-fill active?)", Kind.USAGE)
    run(["mount", "-t", "tmpfs", "-o", f"size={DISK_FILL_MB}m,mode=0755", DISK_FILL_DEVICE, str(path)])
    now = time.time()
    files = []
    for index in range(DISK_FILL_OLD + 1):
        old = index < DISK_FILL_OLD
        when = now - (30 - index) * 86400 if old else now - 3600
        name = time.strftime("octollm-%Y%m%dT%H%M%S.dump", time.gmtime(when))
        file = path / name
        with open(file, "wb") as handle:
            handle.write(os.urandom((6 if old else 2) * 1024 * 1024))
        os.utime(file, (when, when))
        files.append(name)
    return {"path": str(path), "files": files, "size_mb": DISK_FILL_MB}


def _disk_fill_heal(lab: Lab, record: dict[str, Any]) -> None:
    path = record.get("path") or str(lab.state / "backups")
    if os.path.ismount(path):
        run(["umount", "--lazy", path])


FAULTS = (
    Fault("disk-fill", COMPONENT, f"a {DISK_FILL_MB} MB tmpfs on the state dir's backups/ filled to 92% with "
          "backups, most older than 7 days",
          _disk_fill_inject, _disk_fill_heal),
)
