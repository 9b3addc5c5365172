"""The README stays truthful and complete: it names every command and option of the real
parser, every endpoint of the OpenAPI document, every tenant setting and every ``GATEWAY_*``
variable the code reads; its set-up commands are the ones a newcomer needs. The generated
sections come from tests/readme_sections.py (``python -m tests.readme_sections`` rewrites
them)."""

from __future__ import annotations

import re

from tests import readme_sections as sections

TEXT = sections.README.read_text()
DEMO_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -q -e . && "
                ".venv/bin/python app.py demo")
TEST_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
                ".venv/bin/python -m pytest -q -n 2")


def test_the_two_set_up_commands_come_first_and_the_test_block_is_kept():
    blocks = re.findall(r"^```[a-z]*\n(.*?)\n```$", TEXT, re.DOTALL | re.MULTILINE)
    assert blocks.index(DEMO_COMMAND) < blocks.index(TEST_COMMAND)
    assert f"<!-- test-command -->\n```\n{TEST_COMMAND}\n```\n<!-- /test-command -->" in TEXT
    assert "<!-- demo-output -->" in TEXT and "<!-- /demo-output -->" in TEXT


def test_every_command_and_option_is_in_the_readme():
    missing = []
    for path, parser in sections.leaves(sections.parser()):
        if f"python app.py {' '.join(path)}" not in TEXT:
            missing.append(" ".join(path))
        for action in parser._actions:
            missing += [f"{' '.join(path)} {o}" for o in action.option_strings
                        if o.startswith("--") and o != "--help" and o not in TEXT]
    assert not missing, f"not in README.md (run python -m tests.readme_sections): {missing}"


def test_every_endpoint_is_in_the_readme():
    paths = sections._openapi()["paths"]
    missing = [p for p in paths if f"`{p}`" not in TEXT]
    assert not missing, f"not in README.md (run python -m tests.readme_sections): {missing}"


def test_every_tenant_setting_is_in_the_readme():
    from gateway.tenant_settings import KEYS

    assert not [k for k in KEYS if f"| `{k}` |" not in TEXT]


def test_every_environment_variable_the_code_reads_is_in_the_readme():
    read = set()
    for folder in ("gateway", "connectors"):
        for source in (sections.ROOT / folder).rglob("*.py"):
            read |= set(re.findall(r"[\"'`](GATEWAY_[A-Z0-9_]*[A-Z0-9])[\"'`]",
                                   source.read_text()))
    assert "GATEWAY_DATABASE_URL" in read  # the scan works
    missing = sorted(v for v in read if f"`{v}`" not in TEXT)
    assert not missing, f"not in README.md's environment table: {missing}"
