"""adapt.scope: tenant: a caller scope with enough outcomes of its own gets its own versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.test_adapt import adapt_config, log_learnable_traffic
from tierwise.adapt.refresh import refresh_all
from tierwise.adapt.scorer import AdaptedScorer
from tierwise.adapt.store import store_for
from tierwise.cli import main
from tierwise.config import load_config
from tierwise.request import ChatRequest, Scope
from tierwise.router import TierRouter


def test_a_tenant_with_enough_outcomes_is_served_its_own_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = adapt_config(tmp_path, min_outcomes=20, scope="tenant")
    config = load_config(settings)
    alice, bob, carol = Scope(user="alice"), Scope(user="bob"), Scope(user="carol")
    # Most of the traffic (carol's) fails on the cheap tier where the scorer expects it to;
    # alice's cheap tier fails on what the scorer finds easy: only her own version can say so.
    log_learnable_traffic(config, n=300, start=1000, scope=carol, hard_topic=0)
    log_learnable_traffic(config, n=200, scope=alice)
    log_learnable_traffic(config, n=10, start=500, scope=bob)  # below min_outcomes
    _, *tenants = refresh_all(config)
    assert sorted(t.scope for t in tenants) == sorted([alice.key(), carol.key()])
    tenants = [t for t in tenants if t.scope == alice.key()]  # bob has too few of his own
    assert tenants[0].result.adopted, tenants[0].result.why
    own = store_for(config, alice.key()).current()
    assert own is not None and own.parent == 0  # its rollback serves the install-wide one
    router = TierRouter(config)
    scorer = router.scorer
    assert isinstance(scorer, AdaptedScorer)
    assert scorer.current(alice.key()) == own
    assert scorer.current(bob.key()) == store_for(config).current()  # install-wide (or none)
    question = "Name a colour of the sky. (new)"
    for scope in (alice, bob):
        request = ChatRequest.from_text(question)
        request.scope = scope
        router.decide(request)
        served = scorer.current(scope.key())
        assert request.memo["adapt"]["version"] == (served.version if served else 0)
    # One command rolls the tenant back to the install-wide version; a bad key is refused.
    path = tmp_path / "tierwise.yaml"
    path.write_text(yaml.safe_dump(settings))
    assert main(["--config", str(path), "adapt", "--scope", alice.key(), "--rollback"]) == 0
    assert store_for(config, alice.key()).current() is None
    assert main(["--config", str(path), "adapt", "--scope", "../etc", "--status"]) == 1
    assert "not a scope key" in capsys.readouterr().err


def test_with_the_install_scope_no_tenant_versions_are_made(tmp_path: Path) -> None:
    config = load_config(adapt_config(tmp_path, min_outcomes=20))
    log_learnable_traffic(config, n=200, scope=Scope(user="alice"))
    assert len(refresh_all(config)) == 1
    assert not (store_for(config).dir / "scopes").exists()
