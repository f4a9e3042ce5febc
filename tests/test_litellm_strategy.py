"""TierwiseStrategy on an in-process litellm.Router (the SDK path), against stand-in tiers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.servers import Stub

pytestmark = pytest.mark.integration


def test_router_strategy_routes_auto_and_leaves_other_groups(
    stub_factory: Callable[..., Stub],
) -> None:
    import litellm

    from litellm_plugin.strategy import TierwiseStrategy
    from tierwise.request import RequestError

    stubs = {name: stub_factory(name) for name in ("local", "cloud")}

    def entry(group: str, stub: Stub, tier: str | None) -> dict[str, Any]:
        params = {"model": "openai/m", "api_base": f"{stub.url}/v1", "api_key": "unused"}
        info = {"tierwise_tier": tier} if tier else {}
        return {"model_name": group, "litellm_params": params, "model_info": info}

    router = litellm.Router(
        model_list=[
            entry("auto", stubs["local"], "local"),
            entry("auto", stubs["cloud"], "cloud"),
            entry("plain", stubs["cloud"], None),
        ],
        num_retries=2,
    )
    strategy = TierwiseStrategy.install(router)
    try:

        async def ask(text: Any, model: str = "auto", **extra: Any) -> str:
            reply = await router.acompletion(
                model=model, messages=[{"role": "user", "content": text}], **extra
            )
            return str(reply.choices[0].message.content)

        async def scenario() -> None:
            # A deployment's first call in a process is LiteLLM warming up, not timed.
            assert (await ask("Hi! How are you today?")).startswith("[local]")
            assert (await ask("Hi! How are you today?")).startswith("[local]")
            for _ in range(50):  # success logging runs as a background task
                if strategy.engine.router.signals.latency.samples("local"):
                    break
                await asyncio.sleep(0.05)
            assert strategy.engine.router.signals.latency.samples("local") == 1
            hard = (
                "Prove that the square root of 2 is irrational, then generalize the argument "
                "to any prime p, and analyze where the proof fails for composite numbers."
            )
            assert (await ask(hard)).startswith("[cloud]")
            assert (await ask("Hi!", model="plain")).startswith("[cloud]")  # untouched
            stubs["local"].control(fail_status=503)
            assert (await ask("Hi! How are you today?")).startswith("[cloud]")  # fallback
            image = [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ]
            assert (await ask(image)).startswith("[cloud]")  # only cloud lists `vision`
            with pytest.raises(RequestError, match="unknown role 'wizard'"):
                await router.acompletion(
                    model="auto", messages=[{"role": "wizard", "content": "x"}]
                )

        asyncio.run(scenario())
    finally:
        litellm.callbacks.remove(strategy.handler)
        strategy.engine.close()
