"""The Open WebUI adapter's host-free parts: valve formats, tier mapping, access narrowing,
status text, valve checks, and the installer's checks (no Open WebUI process needed)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from openwebui_pipe import auto_router as ar
from openwebui_pipe import host, install, ladder, status
from openwebui_pipe.chat import Route
from tests.conftest import REPO, three_tiers
from tierwise.config import load_config
from tierwise.router import TierRouter

PIPE_FILE = ar.__file__
CONFIG = load_config({**three_tiers(), "scoring": {"method": "heuristic"}})


def model(mid: str, owned_by: str = "openai", tags: tuple[str, ...] = (), **extra: Any) -> dict:
    return {"id": mid, "owned_by": owned_by, "tags": [{"name": t} for t in tags], **extra}


INSTALLED = [
    model("llama3.2:1b", "ollama"),
    model("qwen-hpc", tags=("tierwise:hpc",)),
    model("gpt-4o"),
    model("cloud-model"),
]


@pytest.mark.parametrize("name", ["auto_router.py", "feedback_event.py"])
def test_the_file_avoids_import_spellings_open_webui_rewrites(name: str) -> None:
    text = install.function_source(name)
    for rewritten in ("from utils", "from main", "from config", "from apps"):
        assert rewritten not in text, rewritten


def test_the_frontmatter_names_title_and_version() -> None:
    head = Path(PIPE_FILE).read_text(encoding="utf-8").split('"""')[1]
    fields = dict(line.split(":", 1) for line in head.strip().splitlines())
    assert fields["title"].strip() and fields["version"].strip() == "0.2.0"
    # No requirements line: tierwise is not a registry package, and Open WebUI would
    # pip-install whatever answers to that name (README: Open WebUI -> Install).
    assert "requirements" not in fields
    assert install.frontmatter_version(install.pipe_source()) == "0.2.0"


def test_the_pasted_file_stays_thin() -> None:
    assert len(Path(PIPE_FILE).read_text(encoding="utf-8").splitlines()) <= 200


def test_tier_models_parse_and_report_bad_entries() -> None:
    parsed = ladder.parse_tier_models("local = llama3.2:1b, qwen:7b ;\n cloud=gpt-4o;")
    assert parsed == {"local": ("llama3.2:1b", "qwen:7b"), "cloud": ("gpt-4o",)}
    assert ladder.parse_tier_models("  ") == {}
    for bad, words in (
        ("local", "not 'tier=model"),
        ("local=", "not 'tier=model"),
        ("local=a; local=b", "listed twice"),
        ("local=a cloud=b", "separate tiers with ';'"),
    ):
        with pytest.raises(ValueError, match=words):
            ladder.parse_tier_models(bad)


def test_thresholds_parse_and_report_bad_entries() -> None:
    assert ladder.parse_thresholds("hpc=0.3; cloud=0.7") == {"hpc": 0.3, "cloud": 0.7}
    for bad in ("hpc", "hpc=high", "cloud=1.5", "cloud=-0.1"):
        with pytest.raises(ValueError, match=r"0\.\.1"):
            ladder.parse_thresholds(bad)


def test_explicit_mapping_wins_and_missing_models_become_notes() -> None:
    setup = ladder.build_setup(
        CONFIG, {"local": ("llama3.2:1b",), "cloud": ("gpt-4o", "gone")}, {}, INSTALLED
    )
    tiers = {t.name: t.models for t in setup.config.tiers}
    assert tiers == {"local": ("llama3.2:1b",), "hpc": ("qwen-hpc",), "cloud": ("gpt-4o",)}
    assert setup.notes == ("cloud: gone not installed",)


def test_automatic_mapping_uses_tags_config_names_then_ollama() -> None:
    setup = ladder.build_setup(CONFIG, {}, {}, INSTALLED)
    tiers = {t.name: t.models for t in setup.config.tiers}
    # local: no tag, its config name 'local-model' is not installed -> the Ollama model;
    # hpc: tagged tierwise:hpc; cloud: its config name 'cloud-model' is installed.
    assert tiers == {"local": ("llama3.2:1b",), "hpc": ("qwen-hpc",), "cloud": ("cloud-model",)}


def test_tags_set_in_admin_models_count_too() -> None:
    tagged = model("big", info={"meta": {"tags": [{"name": "TierWise:Cloud"}]}})
    setup = ladder.build_setup(CONFIG, {"local": ("llama3.2:1b",)}, {}, [INSTALLED[0], tagged])
    assert [(t.name, t.models) for t in setup.config.tiers] == [
        ("local", ("llama3.2:1b",)),
        ("cloud", ("big",)),
    ]


def test_tiers_without_installed_models_are_dropped_and_none_left_is_explained() -> None:
    setup = ladder.build_setup(CONFIG, {}, {}, [model("cloud-model")])
    assert [t.name for t in setup.config.tiers] == ["cloud"]
    with pytest.raises(ladder.SetupError, match=r"no tier has an installed model.*installed: x"):
        ladder.build_setup(CONFIG, {}, {}, [model("x")])


def test_mapped_models_all_unavailable_are_said_to_be_down_not_unset() -> None:
    with pytest.raises(ladder.SetupError, match=r"none of the models in tier_models \(gone\)"):
        ladder.build_setup(CONFIG, {"local": ("gone",)}, {}, [model("x")])


def test_unknown_tiers_and_falling_thresholds_are_refused() -> None:
    with pytest.raises(
        ladder.SetupError, match=r"tier_models: unknown tier 'gpu'.*local, hpc, cloud"
    ):
        ladder.build_setup(CONFIG, {"gpu": ("x",)}, {}, INSTALLED)
    with pytest.raises(ladder.SetupError, match="thresholds: unknown tier 'gpu'"):
        ladder.build_setup(CONFIG, {}, {"gpu": 0.5}, INSTALLED)
    with pytest.raises(
        ladder.SetupError,
        match=r"thresholds: the lowest scores must rise .* \(local=0, hpc=0.9, cloud=0.5\)",
    ):
        ladder.build_setup(CONFIG, {}, {"hpc": 0.9, "cloud": 0.5}, INSTALLED)


def test_thresholds_move_the_decision() -> None:
    hard = "Prove that there are infinitely many primes and derive the density rigorously."
    default = ladder.build_setup(CONFIG, {}, {}, INSTALLED).config
    strict = ladder.build_setup(CONFIG, {}, {"hpc": 0.98, "cloud": 0.99}, INSTALLED).config
    assert TierRouter(default).decide_text(hard).tier != "local"
    assert TierRouter(strict).decide_text(hard).tier == "local"


def test_restrict_keeps_only_models_the_user_may_use() -> None:
    config = ladder.build_setup(CONFIG, {"cloud": ("gpt-4o", "cloud-model")}, {}, INSTALLED).config
    mine = ladder.restrict(config, {"llama3.2:1b", "cloud-model"})
    assert mine is not None
    assert [(t.name, t.models) for t in mine.tiers] == [
        ("local", ("llama3.2:1b",)),
        ("cloud", ("cloud-model",)),
    ]
    assert ladder.restrict(config, {"something-else"}) is None


def test_routable_models_exclude_pipes_arenas_and_auto_itself() -> None:
    assert ladder.is_routable(model("gpt-4o"), "auto")
    assert not ladder.is_routable(model("auto"), "auto")
    assert not ladder.is_routable(model("other", pipe={"type": "pipe"}), "auto")
    assert not ladder.is_routable(model("arena-model", arena=True), "auto")


def test_status_text_names_model_tier_score_reason_and_access_limit() -> None:
    router = TierRouter(CONFIG)
    local = router.decide_text("hi")
    assert status.status_text(local, "llama3.2:1b") == (
        f"auto → llama3.2:1b (local) · score {local.score:.2f} LOW · {local.short_reason()}"
    )
    limited = status.status_text(local, "llama3.2:1b", "cloud is not permitted")
    assert limited.endswith(f"{local.short_reason()} · cloud is not permitted")


def test_the_short_line_says_model_tier_reason_and_first_token_in_few_words() -> None:
    router = TierRouter(CONFIG)
    easy = router.decide_text("hi")
    hard = router.decide_text(HARD)
    assert status.brief_reason(easy) == "easy question"
    assert status.brief_reason(hard) == "hard question"
    line = status.short_status("llama3.2:1b", "local", "easy question", 14.2)
    assert line == "llama3.2:1b (local) · easy question · first token 14 ms"
    assert status.short_status("m", "hpc", "long chat", None) == "m (hpc) · long chat"


def test_error_reply_is_words_for_chats_and_nothing_for_background_tasks() -> None:
    assert status.error_reply("no model", None) == "tierwise could not answer: no model"
    assert status.error_reply("no model", "title_generation") == ""


def test_valves_refuse_bad_shapes_with_the_reason() -> None:
    assert ar.Pipe.Valves(tier_models="local=a; cloud=b").tier_models == "local=a; cloud=b"
    with pytest.raises(ladder.SetupError, match="separate tiers with ';'"):
        ar.Pipe.Valves(tier_models="local=a cloud=b")
    with pytest.raises(ladder.SetupError, match="thresholds: 'cloud=2'"):
        ar.Pipe.Valves(thresholds="cloud=2")


def test_install_checks_only_run_while_open_webui_saves() -> None:
    assert not host.saving_valves()
    # Outside Open WebUI's save handler, a model that is not installed is not refused here
    # (at load time a connection may be down); the call reports it instead.
    assert ar.Pipe.Valves(tier_models="local=not-installed").tier_models


def test_save_refuses_unknown_models_and_bad_config_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(host, "saving_valves", lambda: True)
    monkeypatch.setattr(host, "live_models", lambda: INSTALLED)
    with pytest.raises(ladder.SetupError, match=r"unknown model id 'nope'; installed: cloud-model"):
        ar.Pipe.Valves(tier_models="local=nope")
    with pytest.raises(ladder.SetupError, match=r"config_path: .*no such file"):
        ar.Pipe.Valves(config_path="/nonexistent/tierwise.yaml")
    assert ar.Pipe.Valves(tier_models="local=llama3.2:1b; cloud=gpt-4o").fallback is True


def test_setup_is_cached_until_valves_or_models_change() -> None:
    pipe = ar.Pipe()
    pipe.valves = ar.Pipe.Valves(tier_models="local=llama3.2:1b")
    first = pipe.router.setup(pipe.valves, INSTALLED)
    assert pipe.router.setup(pipe.valves, list(INSTALLED)) is first
    assert pipe.router.setup(pipe.valves, INSTALLED[:2]) is not first
    pipe.valves = ar.Pipe.Valves(tier_models="local=llama3.2:1b", thresholds="cloud=0.9")
    assert pipe.router.setup(pipe.valves, INSTALLED[:2]).config.tier("hpc").models == ("qwen-hpc",)


def test_routers_are_shared_per_ladder_with_one_set_of_signals() -> None:
    pipe = ar.Pipe()
    a, b = pipe.router.router(CONFIG), pipe.router.router(CONFIG.model_copy())
    assert a is b and a.signals is pipe.router.signals


# -- the installer's checks ---------------------------------------------------------------


def test_valve_args_parse_json_values_and_name_allowed_keys() -> None:
    assert install.parse_valve_args(["fallback=false", "config_path=/etc/t.yaml"]) == {
        "fallback": False,
        "config_path": "/etc/t.yaml",
    }
    with pytest.raises(install.InstallError, match="key from tier_models, thresholds"):
        install.parse_valve_args(["colour=blue"])


def test_check_valves_names_every_problem_and_the_installed_models() -> None:
    have = [model("a"), model("b")]
    install.check_valves({"tier_models": "local=a"}, have)
    with pytest.raises(install.InstallError, match="unknown model id 'c'; Open WebUI has: a, b"):
        install.check_valves({"tier_models": "local=c"}, have)
    with pytest.raises(install.InstallError, match="thresholds"):
        install.check_valves({"thresholds": "cloud=x"}, have)
    # What the server would refuse only after the function exists is refused here first.
    with pytest.raises(install.InstallError, match="unknown tier 'gpu'"):
        install.check_valves({"tier_models": "gpu=a"}, have)
    with pytest.raises(install.InstallError, match="lowest scores must rise"):
        install.check_valves(
            {"tier_models": "local=a; hpc=b", "thresholds": "hpc=0.8; cloud=0.5"},
            [*have, model("cloud")],
        )
    with pytest.raises(install.InstallError, match="no models \\(add a connection first\\)"):
        install.check_valves({"tier_models": "local=a"}, [])


def fake_open_webui(
    role: str, calls: list[str], refuse_valves: bool = False, api_keys: bool = True
) -> httpx.Client:
    """An in-process stand-in for the endpoints the installer calls, answering as Open WebUI
    0.12.4 does (routers/functions.py, routers/models.py, utils/auth.py)."""
    state: dict[str, Any] = {"functions": {}, "model": None}

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        calls.append(f"{request.method} {path}")
        if path == "/api/v1/functions/list":
            if not api_keys:
                return httpx.Response(
                    403, json={"detail": "Use of API key is not enabled in the environment."}
                )
            if role != "admin":
                return httpx.Response(
                    401, json={"detail": "You do not have permission to access this resource."}
                )
            return httpx.Response(200, json=[])
        if path.startswith("/api/v1/functions/"):
            return function_endpoint(request, state["functions"], refuse_valves)
        if path == "/api/models":
            return httpx.Response(200, json={"data": [model("a"), model("auto", pipe={})]})
        if path == "/api/v1/models/model":
            if state["model"] is None:
                return httpx.Response(401, json={"detail": "not found"})
            return httpx.Response(200, json=state["model"])
        if path in ("/api/v1/models/create", "/api/v1/models/model/update"):
            state["model"] = json.loads(request.content)
            return httpx.Response(200, json=state["model"])
        return httpx.Response(404, json={"detail": "Not Found"})

    client = httpx.Client(transport=httpx.MockTransport(handle))
    client.state = state  # type: ignore[attr-defined]
    return client


def function_endpoint(
    request: httpx.Request, functions: dict[str, dict[str, Any]], refuse_valves: bool
) -> httpx.Response:
    """/api/v1/functions/... for any function id, as routers/functions.py answers."""
    path = request.url.path
    if path == "/api/v1/functions/create":
        form = json.loads(request.content)
        kind = "event" if "class Event" in form["content"] else "pipe"  # as its loader tells
        functions[form["id"]] = {"id": form["id"], "type": kind, "is_active": False}
        functions[form["id"]]["content"] = form["content"]
        return httpx.Response(200, json=functions[form["id"]])
    found = re.fullmatch(r"/api/v1/functions/id/(\w+)(/[\w/]+)?", path)
    function = functions.get(found.group(1)) if found else None
    if found is None or function is None:
        return httpx.Response(401, json={"detail": "We could not find what you're looking for :/"})
    action = found.group(2) or ""
    if action == "/update":
        function["content"] = json.loads(request.content)["content"]
    elif action == "/delete":
        del functions[function["id"]]
        return httpx.Response(200, json=True)
    elif action == "/toggle":
        function["is_active"] = not function["is_active"]
    elif action == "/valves":
        return httpx.Response(200, json=function.get("valves", {}))
    elif action == "/valves/update":
        if refuse_valves:
            return httpx.Response(400, json={"detail": "Error updating function valves"})
        function["valves"] = json.loads(request.content)
        return httpx.Response(200, json=function["valves"])
    return httpx.Response(200, json=function)


def test_install_creates_enables_saves_valves_and_turns_builtin_tools_off() -> None:
    calls: list[str] = []
    client = fake_open_webui("admin", calls)
    api = install.OpenWebUI("http://owui.test", "sk-admin", client=client)
    result = install.install(api, valves={"tier_models": "local=a"})
    assert result.created and result.valves == {"tier_models": "local=a"}
    assert calls.count("POST /api/v1/functions/id/auto/toggle") == 1
    assert "installed function 'auto'" in result.summary()
    capabilities = client.state["model"]["meta"]["capabilities"]  # type: ignore[attr-defined]
    assert capabilities["builtin_tools"] is False and capabilities["vision"] is True
    assert "built-in tools: off" in result.summary()
    # Beside it, the event function that stores ratings of its answers, switched on.
    ratings = client.state["functions"]["auto_ratings"]  # type: ignore[attr-defined]
    assert ratings["type"] == "event" and ratings["is_active"] is True
    assert ratings["valves"] == {"pipe_id": "auto"} and "class Event" in ratings["content"]
    assert "ratings: thumbs up/down on 'auto' answers" in result.summary()
    before = len(calls)
    with pytest.raises(install.InstallError, match="unknown model id 'zz'"):
        install.install(api, valves={"tier_models": "local=zz"})
    assert not [c for c in calls[before:] if c.startswith("POST")]  # nothing was changed
    again = install.install(api, builtin_tools=True)
    assert not again.created and calls.count("POST /api/v1/functions/id/auto/toggle") == 1
    assert client.state["model"]["meta"]["capabilities"]["builtin_tools"] is True  # type: ignore[attr-defined]


def test_a_refused_valves_save_undoes_the_install_and_says_so() -> None:
    calls: list[str] = []
    client = fake_open_webui("admin", calls, refuse_valves=True)
    api = install.OpenWebUI("http://owui.test", "sk-admin", client=client)
    with pytest.raises(install.InstallError, match=r"refused the valves .*deleted again"):
        install.install(api, valves={"tier_models": "local=a"})
    assert client.state["functions"] == {}  # type: ignore[attr-defined]
    assert "POST /api/v1/functions/id/auto/toggle" not in calls  # never switched on


def test_ratings_can_be_left_out_and_a_foreign_function_is_not_overwritten() -> None:
    client = fake_open_webui("admin", [])
    api = install.OpenWebUI("http://owui.test", "sk-admin", client=client)
    result = install.install(api, valves={"tier_models": "local=a"}, ratings=False)
    assert "auto_ratings" not in client.state["functions"]  # type: ignore[attr-defined]
    assert "ratings: not collected (--no-ratings)" in result.summary()
    foreign = {"id": "auto_ratings", "type": "filter", "is_active": True, "content": "x"}
    client.state["functions"]["auto_ratings"] = foreign  # type: ignore[attr-defined]
    with pytest.raises(install.InstallError, match="a filter function already has the id"):
        install.install(api)
    assert client.state["functions"]["auto_ratings"]["content"] == "x"  # type: ignore[attr-defined]


def test_install_says_why_a_token_cannot_install() -> None:
    user = install.OpenWebUI("http://owui.test", "sk-u", client=fake_open_webui("user", []))
    with pytest.raises(install.InstallError, match=r"not an admin.*HTTP 401"):
        install.install(user)
    off = fake_open_webui("admin", [], api_keys=False)
    with pytest.raises(install.InstallError, match=r"does not accept API keys.*ENABLE_API_KEYS"):
        install.install(install.OpenWebUI("http://owui.test", "sk-a", client=off))
    with pytest.raises(install.InstallError, match="must start with http"):
        install.OpenWebUI("owui.test", "t")
    with pytest.raises(install.InstallError, match="--token is empty"):
        install.OpenWebUI("http://owui.test", " ")


# -- one routing step, with the install's models and one user's access ----------------------

HARD = (
    "Prove that there are infinitely many primes p such that p = 4k+3, and derive the "
    "asymptotic density using Dirichlet's theorem; then compare with a rigorous analysis of "
    "the error term."
)


@pytest.fixture
def ladder_file(tmp_path: Path) -> str:
    """The built-in ladder with its scorer pinned to the heuristic (scores stay put)."""
    config = yaml.safe_load((REPO / "tierwise/defaults/default.yaml").read_text())
    config["scoring"]["method"] = "heuristic"
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def routed(ladder_file: str, allowed: set[str], task: str | None = None, **valves: Any) -> Route:
    pipe = ar.Pipe()
    pipe.valves = ar.Pipe.Valves(
        tier_models="local=llama3.2:1b; hpc=qwen-hpc; cloud=gpt-4o",
        config_path=ladder_file,
        **valves,
    )
    body = {"model": "auto", "messages": [{"role": "user", "content": HARD}]}
    return asyncio.run(pipe.router.route(pipe.valves, body, INSTALLED, allowed, "user-1", task))


def test_route_caps_a_user_at_the_tiers_they_may_use_and_says_so(ladder_file: str) -> None:
    everyone = routed(ladder_file, {"llama3.2:1b", "qwen-hpc", "gpt-4o"})
    assert everyone.tiers[0] == "cloud" and everyone.wanted is None and everyone.limit == ""
    capped = routed(ladder_file, {"llama3.2:1b", "qwen-hpc"})
    assert capped.tiers == ["hpc", "local"]  # never cloud, not even as a fallback
    assert capped.wanted is not None and capped.wanted.tier == "cloud"
    assert capped.status.startswith("auto → qwen-hpc (hpc) · score ")
    assert "-> cloud" in capped.status  # where the chat would have gone
    assert capped.status.endswith("cloud is not permitted for your account (you may use up to hpc)")


def test_route_sends_background_tasks_to_the_cheapest_tier_first(ladder_file: str) -> None:
    title = routed(ladder_file, {"llama3.2:1b", "qwen-hpc", "gpt-4o"}, task="title_generation")
    assert title.tiers == ["local", "hpc", "cloud"] and title.decision is None
    assert routed(ladder_file, {"gpt-4o"}, task="tags_generation", fallback=False).tiers == [
        "cloud"
    ]


def test_route_explains_a_user_with_no_model_behind_auto(ladder_file: str) -> None:
    with pytest.raises(ladder.SetupError, match="may not use any model behind auto"):
        routed(ladder_file, {"something-else"})
