"""`tierwise doctor`: what works here, what does not, and the command that fixes it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from tierwise.config import ConfigError, TierwiseConfig, load_config
from tierwise.rules import load_custom_rule
from tierwise.signals.vram import GIB, load_nvml
from tierwise.tokens import ENCODER_INSTALL_HINT, TokenCounter, encoder_model_dir

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers
    from tierwise.scoring.base import Scorer

# Host packages and the ranges tierwise is tested with.
HOST_PACKAGES = (
    ("litellm", "1.103.5 - 1.104.x", "pip install 'tierwise[litellm]'"),
    ("open-webui", "0.12.x", "install Open WebUI itself (docs/openwebui.md)"),
    ("globus-compute-sdk", "4.16 - 4.17", "pip install 'tierwise[hpc]'"),
    ("websockets", "13 - 15", "pip install 'tierwise[hpc]'"),
    ("onnxruntime", "1.20 - 1.32", "pip install 'tierwise[learned]'"),
    ("nvidia-ml-py", "12 - 13", "pip install 'tierwise[gpu]'"),
)


def register(sub: Subparsers) -> None:
    doctor = sub.add_parser("doctor", help="check config, GPU, tokenizer and host packages")
    doctor.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    checks, code = run(args.config)
    print(format_checks(checks))
    return code


@dataclass(frozen=True)
class Check:
    status: str  # OK, WARN, FAIL
    what: str
    detail: str


def run(config_path: str | None) -> tuple[list[Check], int]:
    checks: list[Check] = []
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        checks.append(Check("FAIL", "config", str(exc)))
        return checks, 2
    where = config_path or "embedded default"
    checks.append(Check("OK", "config", f"{where}: {len(config.tiers)} tiers"))
    checks += list(_tokenizer())
    checks += list(_learned(config))
    checks += list(_gpu(config))
    checks += list(_packages())
    checks += list(_custom_rules(config))
    return checks, 1 if any(c.status == "FAIL" for c in checks) else 0


def _tokenizer() -> Iterator[Check]:
    counter = TokenCounter()
    if counter.exact:
        yield Check("OK", "tokenizer", counter.source)
    else:
        yield Check("WARN", "tokenizer", f"estimating token counts; fix: {ENCODER_INSTALL_HINT}")
    model_dir = encoder_model_dir()
    if model_dir and (Path(model_dir) / "model.safetensors").is_file():
        yield Check("OK", "encoder weights", str(model_dir))
    else:
        yield Check(
            "WARN", "encoder weights", f"not found (learned scorer off); {ENCODER_INSTALL_HINT}"
        )


def _learned(config: TierwiseConfig) -> Iterator[Check]:
    """Whether the learned scorer loads: its static vectors and the head fitted on them."""
    from tierwise.scoring.factory import learned_or_none
    from tierwise.static_encoder import StaticEncoderUnavailable, wheel_dir

    try:
        where = wheel_dir()
    except StaticEncoderUnavailable as exc:
        yield Check("WARN", "learned scorer", f"off, the heuristic serves: {exc}")
        return
    scorer = learned_or_none(config)
    if scorer is None:
        yield Check("WARN", "learned scorer", f"off, the heuristic serves (see the log); {where}")
        return
    yield Check("OK", "learned scorer", f"static vectors from {where}")
    yield _open_chat(config, scorer)


def _open_chat(config: TierwiseConfig, scorer: Scorer) -> Check:
    """Whether open-chat requests get the MiniLM open-chat head or the static path."""
    from tierwise.scoring.learned import LearnedScorer

    if not isinstance(scorer, LearnedScorer) or scorer.model.open_chat is None:
        return Check("OK", "open-chat head", "none in the artifact: the static path serves all")
    if not config.scoring.open_chat_head:
        return Check("OK", "open-chat head", "off (scoring.open_chat_head): static path only")
    if scorer.open_encoder is None:
        return Check("WARN", "open-chat head", f"off, MiniLM did not load; {ENCODER_INSTALL_HINT}")
    window = scorer.model.open_chat.window
    return Check("OK", "open-chat head", f"on: MiniLM, {window} tokens, for open chat")


def _gpu(config: TierwiseConfig) -> Iterator[Check]:
    wanted = sorted(
        {t.vram.device for t in config.tiers if t.vram is not None and t.vram.source == "nvml"}
    )
    nvml = load_nvml()
    if nvml is None:
        status = "WARN" if wanted else "OK"
        yield Check(status, "gpu", "pynvml not installed (pip install 'tierwise[gpu]')")
        return
    try:
        nvml.nvmlInit()
    except Exception as exc:
        status = "WARN" if wanted else "OK"
        yield Check(status, "gpu", f"no GPU visible to NVML ({exc}); the VRAM rule stays idle")
        return
    try:
        count = nvml.nvmlDeviceGetCount()
        for index in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            yield Check(
                "OK",
                f"gpu {index}",
                f"{name}: {info.free / GIB:.1f} of {info.total / GIB:.1f} GB free",
            )
        for device in wanted:
            if device >= count:
                yield Check("FAIL", "gpu", f"a tier watches device {device}; only {count} found")
    finally:
        nvml.nvmlShutdown()


def _packages() -> Iterator[Check]:
    for name, supported, fix in HOST_PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            yield Check("WARN", name, f"not installed (supported {supported}); {fix}")
            continue
        yield Check("OK", name, f"{version} (supported {supported})")


def _custom_rules(config: TierwiseConfig) -> Iterator[Check]:
    for path in config.rules.custom:
        try:
            load_custom_rule(path)
        except ConfigError as exc:
            yield Check("FAIL", "custom rule", str(exc))
        else:
            yield Check("OK", "custom rule", path)


def format_checks(checks: list[Check]) -> str:
    return "\n".join(f"[{c.status:<4}] {c.what:<20} {c.detail}" for c in checks)
