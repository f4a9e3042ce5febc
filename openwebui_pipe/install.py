"""`tierwise openwebui install`: put the auto Pipe into a running Open WebUI through its API.

Checks first, changes after: the token (an admin's API key or JWT), the function id and
every valve (shapes, tiers, thresholds, model ids, features) are checked against the live
server before anything is created. Then it creates (or updates) the function, saves the
valves, switches the function on, turns Open WebUI's built-in tools off for `auto` (unless
asked to keep them) and optionally opens `auto` to every user. If the server still refuses
the valves, a function this run created is deleted again and an updated one gets its old
code back, so a refusal leaves the server as it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from openwebui_pipe.ladder import is_routable, unknown_models, valve_problems, valve_shape_problem

PUBLIC_READ = [{"principal_type": "user", "principal_id": "*", "permission": "read"}]
# What Open WebUI's admin page saves for a new model, with the built-in tools switched off.
CAPABILITIES = {
    "vision": True,
    "file_upload": True,
    "web_search": True,
    "image_generation": True,
    "code_interpreter": True,
    "citations": True,
    "status_updates": True,
}
ADMIN_PROBE = "/api/v1/functions/list"  # admin-only, and it accepts API keys (auths/ does not)


class InstallError(Exception):
    """The install cannot go on; the message says what is wrong and what to do."""


@dataclass
class InstallResult:
    function_id: str
    created: bool
    version: str
    valves: dict[str, Any] = field(default_factory=dict)
    public: bool = False
    builtin_tools: bool = False
    ratings: str = ""  # the event function that collects ratings ("" = not installed)

    def summary(self) -> str:
        verb = "installed" if self.created else "updated"
        lines = [f"{verb} function '{self.function_id}' (auto router {self.version}), active"]
        if self.valves:
            lines.append("valves: " + ", ".join(f"{k}={v!r}" for k, v in self.valves.items()))
        lines.append(
            "built-in tools: kept on for 'auto' (chats from the web UI carry ~7k tokens of tool "
            "definitions and go to tiers that declare tools)"
            if self.builtin_tools
            else "built-in tools: off for 'auto', so easy chats fit the local tier and repeats "
            "can come from the cache (--builtin-tools keeps them)"
        )
        lines.append(
            "model 'auto' is open to every user"
            if self.public
            else "model 'auto' is visible to admins; grant users access in Admin -> Models "
            "(or rerun with --public)"
        )
        lines.append(
            f"ratings: thumbs up/down on '{self.function_id}' answers are stored as outcomes "
            f"(function '{self.ratings}'; needs telemetry.log, docs/feedback.md)"
            if self.ratings
            else "ratings: not collected (--no-ratings)"
        )
        return "\n".join(lines)


def pipe_source() -> str:
    """The Pipe file shipped with this tierwise."""
    return function_source("auto_router.py")


def function_source(name: str) -> str:
    """A function file shipped with this tierwise (the Pipe, the ratings event function)."""
    return resources.files("openwebui_pipe").joinpath(name).read_text("utf-8")


def frontmatter_version(source: str) -> str:
    for line in source.splitlines()[1:20]:
        key, _, value = line.partition(":")
        if key.strip() == "version":
            return value.strip()
    return "unknown"


class OpenWebUI:
    """The few Open WebUI API calls the install needs, with errors people can act on."""

    def __init__(self, url: str, token: str, client: httpx.Client | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise InstallError(f"--url {url!r} must start with http:// or https://")
        if not token.strip():
            raise InstallError("--token is empty; use an admin's API key (Settings -> Account)")
        self.url = url.rstrip("/")
        self.client = client or httpx.Client(timeout=30)
        self.token = token.strip()
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, json: Any = None, ok: Sequence[int] = (200,)) -> Any:
        response = self.send(method, path, json)
        if response.status_code not in ok:
            raise InstallError(
                f"{method} {path} answered HTTP {response.status_code}: {_detail(response)}"
            )
        return response.json() if response.content else None

    def send(self, method: str, path: str, json: Any = None) -> httpx.Response:
        try:
            return self.client.request(method, f"{self.url}{path}", json=json, headers=self.headers)
        except httpx.HTTPError as exc:
            raise InstallError(f"cannot reach Open WebUI at {self.url}: {exc}") from None

    def get_optional(self, path: str) -> Any:
        """GET that returns None for 'not found' (Open WebUI says so with 401/404)."""
        result = self.call("GET", path, ok=(200, 401, 404))
        if isinstance(result, Mapping) and set(result) == {"detail"}:
            return None
        return result

    def check_admin(self) -> None:
        """Refuse, with the reason and the fix, a token that cannot install functions."""
        response = self.send("GET", ADMIN_PROBE)
        if response.status_code == 200:
            return
        detail = _detail(response)
        api_key = self.token.startswith("sk-")
        if "API key is not enabled" in detail:
            why = (
                "this Open WebUI does not accept API keys; switch them on (Admin -> Settings -> "
                "General -> API keys, or ENABLE_API_KEYS=true) or use an admin's JWT"
            )
        elif response.status_code == 403 and api_key:
            why = (
                "this Open WebUI restricts the endpoints API keys may call; allow "
                "/api/v1/functions and /api/v1/models (Admin -> Settings -> General) or use "
                "an admin's JWT"
            )
        elif "permission" in detail:
            why = "the token belongs to a user who is not an admin; installing a function needs one"
        else:
            kind = "API key" if api_key else "token"
            why = f"Open WebUI does not accept this {kind} ({detail}); check --token"
        raise InstallError(f"{why} [GET {ADMIN_PROBE}: HTTP {response.status_code}]")


def install(
    api: OpenWebUI,
    *,
    function_id: str = "auto",
    valves: Mapping[str, Any] | None = None,
    public: bool = False,
    builtin_tools: bool = False,
    source: str | None = None,
    ratings: bool = True,
) -> InstallResult:
    """Check everything, then create or update the function, save valves, switch it on."""
    if not function_id.isidentifier():
        raise InstallError(f"--id {function_id!r}: use letters, digits and '_' only")
    api.check_admin()
    existing = existing_function(api, function_id, "pipe", "pick another --id")
    current: dict[str, Any] = {}
    if existing is not None:
        current = api.call("GET", f"/api/v1/functions/id/{function_id}/valves") or {}
    wanted = {**current, **(valves or {})}
    check_valves(wanted, installed_models(api, function_id))
    ratings_id = f"{function_id}_ratings"
    remedy = "remove it or rerun with --no-ratings"
    ratings_existing = existing_function(api, ratings_id, "event", remedy) if ratings else None
    source = source or pipe_source()
    form = {
        "id": function_id,
        "name": function_id,
        "content": source,
        "meta": {"description": "tierwise: routes each chat to the cheapest tier fit for it"},
    }
    put_function(api, form, existing)
    saved: dict[str, Any] = {}
    if valves:
        saved = save_valves(api, function_id, wanted, existing)
    switch_on(api, function_id)
    # Open WebUI lists a function's model only after a refresh; the model settings need it.
    api.call("GET", "/api/models?refresh=true")
    set_builtin_tools(api, function_id, builtin_tools)
    if public:
        api.call(
            "POST",
            "/api/v1/models/model/access/update",
            json={"id": function_id, "name": function_id, "access_grants": PUBLIC_READ},
        )
    # Open WebUI serves chats from its cached model list; refresh it so `auto` answers now.
    api.call("GET", "/api/models?refresh=true")
    version = frontmatter_version(source)
    rated = install_ratings(api, function_id, ratings_existing) if ratings else ""
    return InstallResult(
        function_id, existing is None, version, saved, public, builtin_tools, rated
    )


def existing_function(api: OpenWebUI, function_id: str, kind: str, remedy: str) -> Any:
    """The installed function with this id (None: none yet); refuses one of another kind."""
    existing = api.get_optional(f"/api/v1/functions/id/{function_id}")
    if existing is not None and existing.get("type") not in (None, kind):
        raise InstallError(
            f"a {existing.get('type')} function already has the id {function_id!r}; {remedy}"
        )
    return existing


def install_ratings(api: OpenWebUI, pipe_id: str, existing: Any) -> str:
    """Create or update the event function that stores ratings of the Pipe's answers."""
    ratings_id = f"{pipe_id}_ratings"
    form = {
        "id": ratings_id,
        "name": ratings_id,
        "content": function_source("feedback_event.py"),
        "meta": {"description": f"tierwise: ratings of '{pipe_id}' answers become outcomes"},
    }
    put_function(api, form, existing)
    api.call("POST", f"/api/v1/functions/id/{ratings_id}/valves/update", json={"pipe_id": pipe_id})
    switch_on(api, ratings_id)
    return ratings_id


def put_function(api: OpenWebUI, form: Mapping[str, Any], existing: Any) -> None:
    """Create the function, or update its code when it exists."""
    if existing is None:
        api.call("POST", "/api/v1/functions/create", json=dict(form))
    else:
        api.call("POST", f"/api/v1/functions/id/{form['id']}/update", json=dict(form))


def switch_on(api: OpenWebUI, function_id: str) -> None:
    """Make the function active (a function does nothing until it is)."""
    state = api.call("GET", f"/api/v1/functions/id/{function_id}") or {}
    if not state.get("is_active"):  # toggle flips: only call it when the function is off
        api.call("POST", f"/api/v1/functions/id/{function_id}/toggle")


def installed_models(api: OpenWebUI, own_id: str) -> list[dict[str, Any]]:
    data = api.call("GET", "/api/models?refresh=true") or {}
    return [dict(m) for m in data.get("data", []) if is_routable(m, own_id)]


def check_valves(valves: Mapping[str, Any], installed: Sequence[Mapping[str, Any]]) -> None:
    """Refuse valves the pipe would refuse, with every reason at once.

    A `config_path` that is not a file on this machine (Open WebUI may run elsewhere) is
    left to the server's own check; then only the valves' shapes and model ids are checked.
    """
    tier_models = str(valves.get("tier_models") or "")
    thresholds = str(valves.get("thresholds") or "")
    config_path = str(valves.get("config_path") or "")
    problem = valve_shape_problem(tier_models, thresholds)
    if problem:
        raise InstallError(problem)
    if config_path and not Path(config_path).is_file():
        problems = [p for p in [unknown_models(tier_models, installed)] if p]
    else:
        problems = valve_problems(
            tier_models,
            thresholds,
            config_path,
            bool(valves.get("semantic_cache")),
            bool(valves.get("summarize")),
            installed,
        )
    if not installed:  # the pipe's own check waits for a model list; here it is final
        problems += [p for p in [unknown_models(tier_models, installed)] if p]
    if problems:
        raise InstallError("; ".join(problems).replace("; installed: ", "; Open WebUI has: "))


def save_valves(
    api: OpenWebUI, function_id: str, valves: Mapping[str, Any], existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Save the valves; on a refusal, put the function back as it was and say why."""
    response = api.send("POST", f"/api/v1/functions/id/{function_id}/valves/update", valves)
    if response.status_code == 200:
        return dict(response.json() or {})
    if existing is None:
        api.send("DELETE", f"/api/v1/functions/id/{function_id}/delete")
        undone = f"the function '{function_id}' this run created was deleted again"
    else:
        api.send("POST", f"/api/v1/functions/id/{function_id}/update", dict(existing))
        undone = f"the function '{function_id}' has its previous code back"
    raise InstallError(
        f"Open WebUI refused the valves (HTTP {response.status_code}: {_detail(response)}); "
        f"{undone}. Its server log has the full reason ('Error updating function values')"
    )


def set_builtin_tools(api: OpenWebUI, function_id: str, enabled: bool) -> None:
    """Set the `builtin_tools` capability of the function's model (Admin -> Models).

    Open WebUI attaches its ~30 built-in tool definitions (~7k tokens) to every chat from the
    web UI unless this capability is off: with them, every chat needs a tier with a large
    window and tool support, and answers with tools are never cached.
    """
    found = api.get_optional(f"/api/v1/models/model?id={function_id}")
    if found is None:
        meta = {"capabilities": {**CAPABILITIES, "builtin_tools": enabled}}
        form = {"id": function_id, "name": function_id, "meta": meta, "params": {}}
        api.call("POST", "/api/v1/models/create", json=form)
        return
    meta = dict(found.get("meta") or {})
    capabilities = dict(meta.get("capabilities") or CAPABILITIES)
    if capabilities.get("builtin_tools", True) == enabled:
        return
    meta["capabilities"] = {**capabilities, "builtin_tools": enabled}
    form = {
        "id": function_id,
        "name": found.get("name") or function_id,
        "meta": meta,
        "params": found.get("params") or {},
    }
    api.call("POST", "/api/v1/models/model/update", json=form)


def parse_valve_args(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs from the command line; values that read as JSON become JSON."""
    from openwebui_pipe.auto_router import Pipe

    allowed = list(Pipe.Valves.model_fields)
    valves: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise InstallError(
                f"--valve {pair!r}: use key=value with a key from {', '.join(allowed)}"
            )
        try:
            valves[key] = json.loads(raw)
        except ValueError:
            valves[key] = raw
    return valves


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or "(empty body)"
    if isinstance(body, Mapping) and "detail" in body:
        return str(body["detail"])[:300]
    return str(body)[:300]
