"""`tierwise openwebui install`: put the auto Pipe into a running Open WebUI through its API.

Creates (or updates) the function, switches it on, optionally saves valves and opens the
`auto` model to every user. Valves are checked here against the server's model list
first, because Open WebUI answers a refused save with a generic message (the reason only
reaches its server log).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import httpx

from openwebui_pipe.auto_router import is_routable, parse_thresholds, parse_tier_models

PUBLIC_READ = [{"principal_type": "user", "principal_id": "*", "permission": "read"}]


class InstallError(Exception):
    """The install cannot go on; the message says what is wrong and what to do."""


@dataclass
class InstallResult:
    function_id: str
    created: bool
    version: str
    valves: dict[str, Any] = field(default_factory=dict)
    public: bool = False

    def summary(self) -> str:
        verb = "installed" if self.created else "updated"
        lines = [f"{verb} function '{self.function_id}' (auto router {self.version}), active"]
        if self.valves:
            lines.append("valves: " + ", ".join(f"{k}={v!r}" for k, v in self.valves.items()))
        lines.append(
            "model 'auto' is open to every user"
            if self.public
            else "model 'auto' is visible to admins; grant users access in Admin -> Models "
            "(or rerun with --public)"
        )
        return "\n".join(lines)


def pipe_source() -> str:
    """The Pipe file shipped with this tierwise."""
    return resources.files("openwebui_pipe").joinpath("auto_router.py").read_text("utf-8")


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
        self.headers = {"Authorization": f"Bearer {token.strip()}"}

    def call(self, method: str, path: str, json: Any = None, ok: Sequence[int] = (200,)) -> Any:
        try:
            response = self.client.request(
                method, f"{self.url}{path}", json=json, headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise InstallError(f"cannot reach Open WebUI at {self.url}: {exc}") from None
        if response.status_code in (401, 403) and path == "/api/v1/auths/":
            raise InstallError("Open WebUI rejected the token; check --token (an API key or JWT)")
        if response.status_code not in ok:
            raise InstallError(
                f"{method} {path} answered HTTP {response.status_code}: {_detail(response)}"
            )
        return response.json() if response.content else None

    def get_optional(self, path: str) -> Any:
        """GET that returns None for 'not found' (Open WebUI says so with 401/404)."""
        result = self.call("GET", path, ok=(200, 401, 404))
        if isinstance(result, Mapping) and set(result) == {"detail"}:
            return None
        return result


def install(
    api: OpenWebUI,
    *,
    function_id: str = "auto",
    valves: Mapping[str, Any] | None = None,
    public: bool = False,
    source: str | None = None,
) -> InstallResult:
    """Create or update the function, switch it on, save valves, open `auto` if asked."""
    if not function_id.isidentifier():
        raise InstallError(f"--id {function_id!r}: use letters, digits and '_' only")
    me = api.call("GET", "/api/v1/auths/")
    if (me or {}).get("role") != "admin":
        raise InstallError(
            f"the token belongs to a user with role {(me or {}).get('role')!r}; installing a "
            "function needs an admin's token"
        )
    if valves:  # refuse bad valves before anything on the server changes
        check_valves(valves, installed_model_ids(api, function_id))
    source = source or pipe_source()
    form = {
        "id": function_id,
        "name": function_id,
        "content": source,
        "meta": {"description": "tierwise: routes each chat to the cheapest tier fit for it"},
    }
    existing = api.get_optional(f"/api/v1/functions/id/{function_id}")
    if existing is None:
        function = api.call("POST", "/api/v1/functions/create", json=form)
    else:
        if existing.get("type") not in (None, "pipe"):
            raise InstallError(
                f"a {existing.get('type')} function already has the id {function_id!r}; "
                "pick another --id"
            )
        function = api.call("POST", f"/api/v1/functions/id/{function_id}/update", json=form)
    state = api.call("GET", f"/api/v1/functions/id/{function_id}") or function or {}
    if not state.get("is_active"):  # toggle flips: only call it when the function is off
        api.call("POST", f"/api/v1/functions/id/{function_id}/toggle")
    saved: dict[str, Any] = {}
    if valves:
        current = api.call("GET", f"/api/v1/functions/id/{function_id}/valves") or {}
        saved = api_save_valves(api, function_id, {**current, **valves})
    if public:
        api.call(
            "POST",
            "/api/v1/models/model/access/update",
            json={"id": function_id, "name": function_id, "access_grants": PUBLIC_READ},
        )
    # Open WebUI serves chats from its cached model list; refresh it so `auto` answers now.
    api.call("GET", "/api/models?refresh=true")
    return InstallResult(function_id, existing is None, frontmatter_version(source), saved, public)


def installed_model_ids(api: OpenWebUI, own_id: str) -> list[str]:
    data = api.call("GET", "/api/models?refresh=true") or {}
    return sorted(str(m["id"]) for m in data.get("data", []) if is_routable(m, own_id))


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


def check_valves(valves: Mapping[str, Any], installed: Sequence[str]) -> None:
    """Refuse valves the pipe would refuse, naming the bad value and the choices."""
    try:
        mapping = parse_tier_models(str(valves.get("tier_models") or ""))
        parse_thresholds(str(valves.get("thresholds") or ""))
    except ValueError as exc:
        raise InstallError(str(exc)) from None
    unknown = [m for ms in mapping.values() for m in ms if m not in installed]
    if unknown:
        raise InstallError(
            f"tier_models: unknown model id {', '.join(map(repr, unknown))}; Open WebUI has: "
            + (", ".join(installed) or "no models (add a connection first)")
        )


def api_save_valves(api: OpenWebUI, function_id: str, valves: Mapping[str, Any]) -> dict[str, Any]:
    try:
        saved = api.call("POST", f"/api/v1/functions/id/{function_id}/valves/update", json=valves)
    except InstallError as exc:
        raise InstallError(
            f"{exc}\nOpen WebUI refused the valves; its server log names the reason "
            "(look for 'Error updating function values')"
        ) from None
    return dict(saved or {})


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or "(empty body)"
    if isinstance(body, Mapping) and "detail" in body:
        return str(body["detail"])[:300]
    return str(body)[:300]
