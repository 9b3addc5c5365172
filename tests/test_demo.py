"""``python app.py demo``, run as a newcomer would: a subprocess that builds its own world (a
fresh SQLite database in its folder, the four sandboxes, a tenant), runs one full pass with
``--once`` and exits. Its ``demo-summary`` JSON line carries the sandboxes' own stats and what
the gateway says it delivered; the test holds them to each other.

The demo never reads the user's ``GATEWAY_*`` environment: the test points
``GATEWAY_DATABASE_URL`` at a file and checks it is never created.
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import ROOT

DEMO_TIMEOUT = 240


def _env(tmp_path) -> dict[str, str]:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(PYTHONPATH=str(ROOT),
               GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path / 'must-not-exist.db'}",
               GATEWAY_INSTANCE_PATH=str(tmp_path / "must-not-exist"))
    return env


def _demo(python: str, tmp_path, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run([python, str(ROOT / "app.py"), "demo", *args], cwd=ROOT,
                          env=_env(tmp_path), capture_output=True, text=True,
                          timeout=DEMO_TIMEOUT)


def _summary(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("demo-summary ")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0].removeprefix("demo-summary "))


def test_the_demo_runs_a_full_pass_and_every_sandbox_agrees_with_the_gateway(python,
                                                                            tmp_path):
    folder = tmp_path / "demo"
    result = _demo(python, tmp_path, "--once", "--customers", "100", "--folder", str(folder))
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    summary = _summary(result.stdout)
    assert summary["ok"] and summary["settled"] and summary["dead"] == 0

    stats = summary["sandboxes"]
    assert stats["rci"]["records"]["customers"] == 100
    for check in summary["checks"]:  # the sandbox's own count, as its stats said it
        held = stats[check["service"]]["records"][check["kind"]]
        assert check["sandbox_holds"] == held, check
        assert check["gateway_sent"] == held, check
    by = {(c["service"], c["kind"]): c["sandbox_holds"] for c in summary["checks"]}
    # 100 RCI customers, 2 of them redacted (never sent), plus the sample's new customer.
    assert by[("replenit", "customers")] == by[("rejoiner", "customers")] == 99
    assert by[("replenit", "orders")] == 2 and by[("replenit", "products")] == 1
    for name in ("replenit", "rekindle", "rejoiner", "rci"):
        assert "429" not in stats[name]["requests"], stats[name]  # the gateway kept the limits

    funnel = summary["funnel"]
    assert all(funnel[status] > 0 for status in ("active", "at_risk", "lapsed", "lost"))
    winback = summary["winback"]
    assert winback is not None and winback["before"] in ("lapsed", "lost")
    assert winback["after"] == "active" and winback["returned_at"]
    assert winback["returned_events"] == 1 and winback["cancels"] == 1
    assert winback["still_tagged"] is False

    hooks = summary["hooks"]
    assert hooks["refused"] == 0 and hooks["events"] == summary["status_events"] > 0
    posted = summary["webhooks"]
    assert all(p["status"] == 202 for p in posted[:-1])
    assert posted[-1] == {"topic": "orders", "status": 200, "duplicate": True}

    for table in ("Pulls:", "What each sandbox says it holds", "Dead letters",
                  "Status funnel", "RFM grades", "Trigger items", "/docs"):
        assert table in result.stdout
    assert "DISAGREE" not in result.stdout
    assert (folder / "gateway.db").exists()
    assert not (tmp_path / "must-not-exist.db").exists()
    assert not (tmp_path / "must-not-exist").exists()


def test_bad_arguments_and_a_used_folder_are_one_line_errors(python, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "gateway.db").write_bytes(b"")
    for args in (["--customers", "0"], ["--port", "99999"], ["--folder", str(used)]):
        result = _demo(python, tmp_path, "--once", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stdout == "" and "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["error"], result.stderr
