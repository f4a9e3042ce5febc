"""The feedback loop's core: outcomes, guarded refits, versions, rollback, exploration."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import three_tiers
from tierwise.adapt.fit import Example, FitSettings, identity, refit
from tierwise.adapt.model import Adaptation, sketch_of
from tierwise.adapt.outcomes import OutcomeError, open_log, record_outcome, training_examples
from tierwise.adapt.refresh import refresh
from tierwise.adapt.store import AdaptStore, log_path, store_for
from tierwise.config import TierwiseConfig, load_config
from tierwise.request import ChatRequest, Message, Scope
from tierwise.router import TierRouter
from tierwise.telemetry import Telemetry

THRESHOLDS = [0.0, 0.5]
RANKING = FitSettings(guard="ranking")  # outcomes logged without exploration flags


def sketch(topic: int) -> bytes:
    vector = np.zeros(256, dtype=np.float32)
    vector[topic] = 1.0
    return sketch_of(vector)


def drifted(n: int, seed: int, flip_after: int | None = None) -> list[Example]:
    """Topic 1 questions defeat the cheap tier whatever their score; topic 0 ones never do.
    With flip_after, the topics swap roles from then on (the past stops predicting)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = rng.randrange(2)
        hard = topic == 1 if flip_after is None or i < flip_after else topic == 0
        top = rng.random() < 0.4
        good = True if top else not hard
        out.append(Example(float(i), rng.random(), sketch(topic), top=top, good=good))
    return out


def recent(examples: list[Example]) -> list[tuple[float, bytes | None]]:
    return [(e.score, e.sketch) for e in examples]


def test_nothing_moves_before_the_minimum_number_of_outcomes() -> None:
    examples = drifted(50, 0)
    result = refit(identity(THRESHOLDS), examples, recent(examples), THRESHOLDS, RANKING)
    assert not result.adopted and result.candidate is None
    assert "before 200" in result.why


def test_a_learnable_pattern_is_adopted_and_orders_the_topics() -> None:
    examples = drifted(600, 1)
    result = refit(identity(THRESHOLDS), examples, recent(examples), THRESHOLDS, RANKING)
    assert result.adopted, result.why
    new = result.candidate
    assert new is not None and new.version == 1 and new.parent == 0
    assert new.gain > 0 and result.auroc_new > result.auroc_current
    # Same score, different topic: the hard topic now ranks above the easy one.
    assert new.adjust(0.3, sketch(1)) > new.adjust(0.3, sketch(0))


def test_the_heads_stay_within_max_step_of_the_scorer_as_it_is() -> None:
    examples = drifted(600, 2)
    settings = FitSettings(max_step=0.5, guard="ranking")
    new = refit(identity(THRESHOLDS), examples, recent(examples), THRESHOLDS, settings).candidate
    assert new is not None and new.basis.dims >= 1
    start = identity(THRESHOLDS)
    for head, before in ((new.cheap, start.cheap), (new.top, start.top)):
        origin = np.r_[before, np.zeros(new.basis.dims)]
        assert np.linalg.norm(np.subtract(head, origin)) <= 0.5 + 1e-9


def test_a_version_worse_on_the_held_back_slice_is_not_adopted() -> None:
    # The most recent fifth (the held-back slice) contradicts everything before it.
    examples = drifted(1000, 3, flip_after=800)
    current = refit(identity(THRESHOLDS), drifted(600, 4), [], THRESHOLDS).candidate
    assert current is not None
    result = refit(current, examples, recent(examples), THRESHOLDS, RANKING)
    assert not result.adopted
    assert "not adopted" in result.why


def test_knots_keep_each_tiers_share_of_recent_traffic() -> None:
    examples = drifted(600, 5)
    new = refit(identity(THRESHOLDS), examples, recent(examples), THRESHOLDS, RANKING).candidate
    assert new is not None
    before = np.mean([e.score >= 0.5 for e in examples])
    after = np.mean([new.adjust(e.score, e.sketch) >= 0.5 for e in examples])
    assert abs(before - after) < 0.02


def test_versions_are_kept_and_rollback_moves_the_pointer(tmp_path: Path) -> None:
    store = AdaptStore(tmp_path / "adapt")
    assert store.current() is None
    with pytest.raises(ValueError, match="nothing to roll back"):
        store.rollback()
    first = refit(identity(THRESHOLDS), drifted(600, 6), [], THRESHOLDS).candidate
    assert first is not None
    one = store.adopt(first)
    two = store.adopt(Adaptation.from_dict({**first.as_dict(), "parent": one.version}))
    assert (one.version, two.version) == (1, 2) and store.versions() == [1, 2]
    assert store.current() == two
    assert store.rollback() == 1 and store.current() == one
    assert store.rollback() == 0 and store.current() is None
    assert store.versions() == [1, 2]  # nothing is deleted


def test_a_damaged_version_file_names_itself(tmp_path: Path) -> None:
    store = AdaptStore(tmp_path)
    store.path_of(1).write_text('{"version": 1, "cheap": [1, 2]}')
    store.pointer.write_text("1\n")
    with pytest.raises(ValueError, match=r"v0001\.json"):
        store.current()


def test_a_version_written_before_the_basis_still_reads_the_raw_sketch() -> None:
    """Files of the first release have 258 weights per head and no axes: they keep serving."""
    old = {"version": 3, "knots_p": [0.0, 1.0], "knots_s": [0.0, 1.0]}
    cheap = [0.0, -1.0] + [0.0] * 256
    cheap[2 + 7] = -5.0  # topic 7 makes a cheap answer fail
    legacy = Adaptation.from_dict({**old, "cheap": cheap, "top": [0.0] * 258})
    assert legacy.basis.dims == 256
    assert legacy.need(0.3, sketch(7)) > legacy.need(0.3, sketch(8))
    assert Adaptation.from_dict(legacy.as_dict()) == legacy
    with pytest.raises(ValueError, match="cheap must have 34 weights"):
        Adaptation.from_dict(
            {**old, "center": [0.0] * 256, "axes": [[0.0] * 256] * 32, "cheap": cheap, "top": cheap}
        )


def adapt_config(tmp_path: Path, **adapt: Any) -> dict[str, Any]:
    config = three_tiers()
    config["telemetry"] = {"log": True, "path": str(tmp_path / "log.db"), "metrics": False}
    config["adapt"] = {
        "enabled": True,
        "explore": 0.0,
        "reload_s": 0.01,
        "refit_every": 0,  # no background refit unless a test asks for one
        "refit_interval_s": 0,
        # The plumbing tests log through a three-tier router whose exploration never
        # crosses into the top tier from the cheapest; the policy guard has its own tests.
        "guard": "ranking",
        **adapt,
    }
    return config


def logged(router: TierRouter, text: str, request_id: str, scope: Scope) -> str:
    telemetry = Telemetry.for_router(router, "test")
    decision = router.decide_text(text)
    telemetry.request(decision, scope=scope, request_id=request_id)
    assert telemetry.log is not None and telemetry.log.flush()
    telemetry.close()
    return decision.tier


def test_outcomes_belong_to_the_caller_who_got_the_answer(tmp_path: Path) -> None:
    router = TierRouter(load_config(adapt_config(tmp_path)))
    alice, bob = Scope(user="alice"), Scope(user="bob")
    logged(router, "What is the capital of France?", "chatcmpl-1", alice)
    conn = open_log(tmp_path / "log.db")
    stored = record_outcome(conn, "chatcmpl-1", alice.key(), 0.0, "feedback")
    assert stored.tier and stored.value == 0.0
    with pytest.raises(OutcomeError) as other:
        record_outcome(conn, "chatcmpl-1", bob.key(), 1.0)
    assert other.value.status_code == 404
    for bad in (-0.1, 2, "good", True):
        with pytest.raises(OutcomeError, match="'score'"):
            record_outcome(conn, "chatcmpl-1", alice.key(), bad)  # type: ignore[arg-type]
    with pytest.raises(OutcomeError, match="'id'"):
        record_outcome(conn, "", alice.key(), 1.0)
    # Bob's attempt stored nothing; Alice's rating is a training example with its sketch.
    examples = training_examples(conn, "cloud")
    assert len(examples) == 1 and examples[0].good is False and examples[0].sketch
    conn.close()


def test_the_log_row_keeps_the_scorers_own_score_and_a_sketch(tmp_path: Path) -> None:
    router = TierRouter(load_config(adapt_config(tmp_path)))
    logged(router, "Explain how a B-tree stays balanced.", "chatcmpl-7", Scope())
    conn = sqlite3.connect(tmp_path / "log.db")
    row = conn.execute("SELECT request_id, raw_score, sketch, explored FROM requests").fetchone()
    conn.close()
    assert row[0] == "chatcmpl-7" and 0 <= row[1] <= 1 and len(row[2]) == 256 and row[3] == 0


def test_a_version_log_v1_file_gains_the_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, ts REAL NOT NULL, host TEXT NOT NULL,"
        " scope TEXT NOT NULL, tier TEXT NOT NULL, routed_tier TEXT NOT NULL, model TEXT NOT"
        " NULL, score REAL, band TEXT NOT NULL, reason TEXT NOT NULL, reasons TEXT NOT NULL,"
        " cache_hit INTEGER NOT NULL, summarized INTEGER NOT NULL, fallback INTEGER NOT NULL,"
        " probe INTEGER NOT NULL, ok INTEGER NOT NULL, error TEXT NOT NULL, latency_ms REAL,"
        " ttft_ms REAL, decide_ms REAL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT"
        " NULL, cost_usd REAL NOT NULL, top_cost_usd REAL NOT NULL);"
        "INSERT INTO requests VALUES (1, 0, 'h', 's', 't', 't', 'm', 0.1, 'LOW', 'r', '[]',"
        " 0, 0, 0, 0, 1, '', NULL, NULL, NULL, 1, 1, 0, 0); PRAGMA user_version = 1;"
    )
    conn.close()
    conn = open_log(db)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    assert {"request_id", "raw_score", "sketch", "explored"} <= columns
    assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 1
    conn.close()


def test_the_router_serves_the_adopted_version_and_the_rollback(tmp_path: Path) -> None:
    config = load_config(adapt_config(tmp_path))
    router = TierRouter(config)
    text = "What is the capital of France?"
    plain = router.decide_text(text)
    store = store_for(config)
    # A hand-made version that says every cheap answer fails: the request goes to the top.
    start = identity(list(config.thresholds().values()))
    pessimist = Adaptation.from_dict({**start.as_dict(), "cheap": [-30.0, 0.0], "top": [30.0, 0.0]})
    store.adopt(pessimist)
    time.sleep(0.05)
    adapted = router.decide_text(text)
    assert adapted.tier == "cloud" and "adapt-v1" in adapted.scorer
    assert adapted.notes["adapt"]["raw"] == pytest.approx(plain.score)
    store.rollback()
    time.sleep(0.05)
    assert router.decide_text(text).tier == plain.tier


def test_exploration_says_so_and_stays_among_the_tiers_left(tmp_path: Path) -> None:
    router = TierRouter(load_config(adapt_config(tmp_path, explore=0.2)))
    router._explore = 1.0  # every eligible request explores, to see each one
    decision = router.decide_text("What is the capital of France?")
    assert decision.tier != "local" and any(r.startswith("exploration:") for r in decision.reasons)
    assert decision.notes["explored"] is True
    # A request only the cloud tier can take (an image) is not explored anywhere.
    image = ChatRequest(messages=(Message(role="user", text="What is this?", images=1),))
    seen = router.decide(image)
    assert seen.tier == "cloud" and not any("exploration" in r for r in seen.reasons)
    off = TierRouter(load_config(adapt_config(tmp_path, explore=0.0)))
    for _ in range(20):
        assert not any("exploration" in r for r in off.decide_text("hi").reasons)


def log_learnable_traffic(
    config: TierwiseConfig,
    n: int = 200,
    start: int = 0,
    scope: Scope | None = None,
    hard_topic: int = 1,
) -> None:
    """n requests through a real router into the log, each with an outcome.

    The install's cheap tier fails on the question the scorer finds easy (say, a local
    model that knows no colours): the scorer's order is wrong there, and only the
    outcomes can say so. Exploration lets both topics reach both tiers. hard_topic=0: the
    cheap tier fails where the scorer expects it to (the proof)."""
    scope = scope or Scope(user="u")
    router = TierRouter(config)
    router._explore, router._rng = 0.2, random.Random(1 + start)  # the same every run
    telemetry = Telemetry.for_router(router, "test")
    rng = random.Random(start)
    words = {1: "Name a colour of the sky.", 0: "Prove the Riemann zeta identity for s>1."}
    hard = {}
    now = time.time()
    for i in range(start, start + n):
        topic = rng.randrange(2)
        decision = router.decide_text(f"{words[topic]} ({i})")
        rid = f"{scope.key()[:6]}-{i}"
        telemetry.request(decision, scope=scope, request_id=rid, ts=now + i)
        hard[rid] = topic == hard_topic
    assert telemetry.log is not None and telemetry.log.flush()
    telemetry.close()
    conn = open_log(log_path(config))
    rows = conn.execute("SELECT tier, request_id FROM requests ORDER BY id").fetchall()
    for i, (tier, rid) in enumerate(rows):
        if rid in hard:
            failed = hard[rid] and tier != "cloud"
            record_outcome(conn, rid, scope.key(), 0.0 if failed else 1.0, ts=now + i)
    conn.close()


def test_tierwise_adapt_adopts_from_logged_outcomes(tmp_path: Path) -> None:
    config = load_config(adapt_config(tmp_path, min_outcomes=20))
    log_learnable_traffic(config)
    done = refresh(config)
    assert done.outcomes == 200
    assert done.result.adopted, done.result.why
    assert done.version == 1 and store_for(config).current_version() == 1
    again = refresh(config)  # e.g. the next hourly run, with no new outcomes
    assert again.version == 1 and "no new outcomes" in again.result.why
    assert store_for(config).versions() == [1]


def test_status_and_the_dashboard_panel_show_outcomes_version_and_rollback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx

    from tierwise.cli import main
    from tierwise.dashboard.server import DashboardServer

    config = adapt_config(tmp_path)
    router = TierRouter(load_config(config))
    scope = Scope(user="u")
    logged(router, "What is the capital of France?", "chatcmpl-9", scope)
    conn = open_log(tmp_path / "log.db")
    record_outcome(conn, "chatcmpl-9", scope.key(), 1.0, "rating")
    conn.close()
    store = store_for(load_config(config))
    version = refit(identity(THRESHOLDS), drifted(600, 8), [], THRESHOLDS).candidate
    assert version is not None
    store.adopt(version)
    server = DashboardServer(tmp_path / "log.db", ("local", "hpc", "cloud"), port=0).start()
    try:
        panel = httpx.get(server.url + "api/adapt", timeout=30).json()
    finally:
        server.stop()
    assert panel["outcomes"] == 1 and panel["by_source"] == {"rating": 1}
    assert panel["version"] == 1 and panel["gain"] == round(version.gain, 4)
    assert panel["rollback"] == "tierwise adapt --rollback"
    path = tmp_path / "tierwise.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    assert main(["--config", str(path), "adapt", "--status"]) == 0
    assert "in service: version 1" in capsys.readouterr().out
    assert main(["--config", str(path), "adapt", "--rollback"]) == 0
    assert "none" in capsys.readouterr().out and store.current() is None
    assert main(["--config", str(path), "adapt", "--rollback"]) == 1
    # Without a decision log there is nothing to learn from, and it says where it looked.
    config["telemetry"]["path"] = str(tmp_path / "absent" / "log.db")
    path.write_text(yaml.safe_dump(config))
    assert main(["--config", str(path), "adapt"]) == 1
    assert "no decision log" in capsys.readouterr().err
    assert not (tmp_path / "absent").exists()
