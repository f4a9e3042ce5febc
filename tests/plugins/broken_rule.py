"""A custom rule with a bug: it corrupts the routing state (a floor that is not a number).

The rule itself returns normally, so the core's guard around custom rules cannot catch it;
the decision then fails inside tierwise, which is what the fail-open test needs.
"""

from __future__ import annotations

from tierwise.rules import RoutingState

TRIGGER = "BREAK-TIERWISE"


def corrupt_floor(state: RoutingState) -> None:
    if TRIGGER in state.request.last_user_text:
        state.floor = "high"  # type: ignore[assignment]
