"""The README's generated sections, from the program itself: every command's help (the real
parser), the endpoints (the OpenAPI document) and the tenant settings (their schema and
defaults). ``python -m tests.readme_sections`` rewrites them in README.md between their
``<!-- name -->`` and ``<!-- /name -->`` markers; tests/test_readme.py checks that the README
names everything these sources hold.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HELP_WIDTH = "100"


def parser() -> argparse.ArgumentParser:
    from gateway.cli import build_parser

    return build_parser()


def commands(top: argparse.ArgumentParser) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """Every (path, parser) of ``python app.py``, depth first, the top one first."""
    def walk(p: argparse.ArgumentParser, path: list[str]):
        yield path, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*path, name])

    yield from walk(top, [])


def leaves(top: argparse.ArgumentParser) -> list[tuple[list[str], argparse.ArgumentParser]]:
    """The commands that run something (no sub-commands of their own)."""
    return [(path, p) for path, p in commands(top) if path and not any(
        isinstance(a, argparse._SubParsersAction) for a in p._actions)]


def _help(p: argparse.ArgumentParser) -> str:
    os.environ["COLUMNS"] = HELP_WIDTH
    return p.format_help().rstrip()


def commands_section() -> str:
    top = parser()
    out = ["```", "$ python app.py --help", _help(top), "```", "",
           "<details><summary>Every command's <code>--help</code></summary>", ""]
    for path, p in leaves(top):
        out += [f"#### `python app.py {' '.join(path)}`", "", "```", _help(p), "```", ""]
    out.append("</details>")
    return "\n".join(out)


def _openapi() -> dict:
    from gateway import create_app
    from gateway.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env({}, instance_path=Path(folder),
                                     secret_key="readme-" + "x" * 32)
        app = create_app(settings)
        try:
            return app.test_client().get("/openapi.json").get_json()
        finally:
            app.extensions["gateway"].close()


def endpoints_section() -> str:
    rows = ["| method | path | what |", "|---|---|---|"]
    for path, operations in _openapi()["paths"].items():
        for method, op in operations.items():
            if method in ("get", "post", "put", "patch", "delete"):
                summary = " ".join((op.get("summary") or "").split()).replace("|", "\\|")
                summary = summary.replace("``", "`")
                rows.append(f"| {method.upper()} | `{path}` | {summary} |")
    return "\n".join(rows)


def tenant_settings_section() -> str:
    from gateway.tenant_settings import DEFAULTS, RISING, TenantSettingsSchema

    rows = ["| key | default | meaning |", "|---|---|---|"]
    schema_fields = TenantSettingsSchema().fields
    for key, default in DEFAULTS.as_dict().items():
        meaning = schema_fields[key].metadata.get("description", "")
        meaning = meaning.replace(RISING, "They must rise: at_risk_after < lapsed_after < "
                                          "lost_after; a change that breaks that is refused.")
        meaning = " ".join(meaning.split()).replace("|", "\\|")
        rows.append(f"| `{key}` | `{json.dumps(default)}` | {meaning} |")
    return "\n".join(rows)


SECTIONS: dict[str, Callable[[], str]] = {
    "commands": commands_section,
    "endpoints": endpoints_section,
    "tenant-settings": tenant_settings_section,
}


def fill(text: str, name: str, body: str) -> str:
    """``text`` with the section ``name`` (between its markers) replaced by ``body``."""
    pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(<!-- /{re.escape(name)} -->)",
                         re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name} --> ... <!-- /{name} --> markers")
    return pattern.sub(lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text, count=1)


def main() -> int:
    text = README.read_text()
    for name, make in SECTIONS.items():
        text = fill(text, name, make())
    README.write_text(text)
    print(f"README.md: {', '.join(SECTIONS)} regenerated")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
