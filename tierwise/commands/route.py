"""`tierwise route` and `tierwise demo`: one decision, explained."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from tierwise.commands.common import bundled_examples, config_of
from tierwise.request import ChatRequest, RequestError
from tierwise.router import TierRouter
from tierwise.rules import RoutingError

if TYPE_CHECKING:
    from tierwise.commands.common import Subparsers


def register(sub: Subparsers) -> None:
    route = sub.add_parser("route", help="decide the tier for one prompt; JSON out")
    route.add_argument("prompt", help="the user message ('-' reads it from stdin)")
    route.add_argument("--system", help="a system prompt to include")
    route.add_argument("--image", action="append", default=[], help="an image URL (repeatable)")
    route.add_argument("--tools", action="store_true", help="pretend the request defines tools")
    route.set_defaults(handler=cmd_route)

    demo = sub.add_parser("demo", help="route the bundled example prompts and explain each")
    demo.set_defaults(handler=cmd_demo)


def cmd_route(args: argparse.Namespace) -> int:
    router = TierRouter(config_of(args))
    messages: list[dict[str, object]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    content: object = prompt
    if args.image:
        content = [{"type": "text", "text": prompt}] + [
            {"type": "image_url", "image_url": {"url": url}} for url in args.image
        ]
    messages.append({"role": "user", "content": content})
    body: dict[str, object] = {"model": "auto", "messages": messages}
    if args.tools:
        body["tools"] = [{"type": "function", "function": {"name": "tool", "parameters": {}}}]
    try:
        decision = router.decide(ChatRequest.from_openai(body))
    except (RequestError, RoutingError) as exc:
        print(json.dumps({"error": str(exc)}))
        print(f"tierwise route: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(decision.as_dict(), indent=2))
    print(decision.explain(), file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    router = TierRouter(config_of(args))
    print(f"{'tier':<7}{'score':>6}  {'band':<7}prompt")
    for line in bundled_examples().read_text().splitlines():
        text = json.loads(line)["text"]
        decision = router.decide_text(text)
        print(f"{decision.tier:<7}{decision.score:>6.2f}  {decision.band:<7}{text[:80]}")
    image = ChatRequest.from_openai(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    ],
                }
            ]
        }
    )
    print("\nAn easy question with an image attached:")
    print(router.decide(image).explain())
    return 0
