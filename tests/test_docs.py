"""The docs cannot drift: the configuration reference is generated, and checked here."""

from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path
from types import ModuleType

import pytest

from tierwise.config_docs import key_rows
from tierwise.progress import Progress

REPO = Path(__file__).resolve().parent.parent


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "configuration_docs", REPO / "scripts" / "configuration_docs.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_is_current() -> None:
    page = REPO / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == generator().render(), (
        "docs/configuration.md is out of date: run python scripts/configuration_docs.py"
    )


def test_every_key_is_documented() -> None:
    undocumented = [
        row.key
        for section in generator().SECTIONS
        for row in key_rows(section.model, section.prefix)
        if not row.description.strip()
    ]
    assert undocumented == [], "give these fields a description: " + ", ".join(undocumented)


def test_nested_sections_get_dotted_keys() -> None:
    from tierwise.config import TierwiseConfig

    rows = {row.key: row for row in key_rows(TierwiseConfig)}
    assert rows["tiers"].default == "required"
    assert rows["tiers[].sla.max_ttft_ms"].kind == "float (> 0)"
    assert rows["cache.scope"].kind == '"user" | "team" | "global"'
    assert rows["cache.ttl_s"].default == "`86400`"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()])
def test_progress_redraws_only_on_a_terminal(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr("tierwise.progress.time.monotonic", lambda: next(clock))
    with Progress(100, "work", stream=stream) as progress:
        for _ in range(30):
            progress.advance()
    text = stream.getvalue()
    assert re.search(r"work \[#{9} {21}\] 30/100 \d+/s\n$", text)
    if isinstance(stream, Terminal):
        assert text.count("\r") == 30
    else:
        assert "\r" not in text
        assert 2 <= text.count("\n") <= 4  # a line per ten seconds, then the last one


README = REPO / "README.md"
DOC_PAGES = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors_of(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            title = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower())
            found.add(title.replace(" ", "-"))
    return found


def test_readme_is_short() -> None:
    assert README.read_text(encoding="utf-8").count("\n") <= 300


@pytest.mark.parametrize("page", [README, *DOC_PAGES], ids=lambda p: p.name)
def test_every_link_works(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
            broken.append(f"{target} (no such heading)")
    assert broken == [], f"{page.name}: {broken}"


def test_the_readme_commands_exist() -> None:
    """The two commands, and every `tierwise ...` line the README shows, parse as written."""
    import shlex

    from tierwise.cli import build_parser

    text = README.read_text(encoding="utf-8")
    assert "bash scripts/setup.sh && .venv/bin/tierwise up --smoke" in text
    assert "bash scripts/test.sh" in text
    for script in ("setup.sh", "test.sh"):
        assert (REPO / "scripts" / script).is_file()
    shown = re.findall(r"(?:^|&& |`)(?:\.venv/bin/)?tierwise ([^`\n]+)", text, re.MULTILINE)
    assert len(shown) >= 3
    parser = build_parser()
    for line in shown:
        words = shlex.split(line.split("#")[0].replace("\\", " "))
        parser.parse_args(words)  # exits (a test failure) on an unknown command or flag


def test_the_configuration_example_loads() -> None:
    import yaml

    from tierwise.config import load_config

    config = load_config(yaml.safe_load(generator().EXAMPLE))
    assert [t.name for t in config.ranked_tiers] == ["local", "cloud"]
