"""The serving process refits by itself: off the request path, one replica at a time."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

import pytest

from tests.test_adapt import adapt_config, log_learnable_traffic
from tierwise.adapt.background import Refitter, watch
from tierwise.adapt.store import store_for
from tierwise.config import load_config
from tierwise.router import TierRouter


def wait_for(condition: object, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_serving_router_refits_by_itself_and_serves_the_new_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from tierwise.cli import main

    settings = adapt_config(tmp_path, min_outcomes=20, refit_every=50, refit_check_s=0.05)
    config = load_config(settings)
    router = TierRouter(config)  # what a host builds: the refitter starts with it
    refitter = watch(config)
    assert refitter is not None and refitter.alive
    text = "Name a colour of the sky. (x)"
    assert "adapt-v" not in router.decide_text(text).scorer
    log_learnable_traffic(config)  # 200 outcomes arrive while it serves
    store = store_for(config)
    wait_for(lambda: store.current_version() == 1)
    wait_for(lambda: "adapt-v1" in router.decide_text(text).scorer)
    path = tmp_path / "tierwise.yaml"
    path.write_text(yaml.safe_dump(settings))
    assert main(["--config", str(path), "adapt", "--status"]) == 0
    shown = capsys.readouterr().out
    assert "in service: version 1" in shown and "last background refit:" in shown
    refitter.stop()


def test_one_replica_refits_and_the_others_do_not_repeat_it(tmp_path: Path) -> None:
    settings = adapt_config(tmp_path, min_outcomes=20, refit_every=50, refit_interval_s=600)
    config = load_config(settings)
    log_learnable_traffic(config)
    one, two = Refitter(config), Refitter(config)  # two processes on one state directory
    store = store_for(config)
    store.dir.mkdir(parents=True, exist_ok=True)
    with open(store.dir / "refit.lock", "a") as held:  # a third replica is refitting now
        fcntl.flock(held, fcntl.LOCK_EX)
        assert one.check() is None and store.versions() == []
    done = one.check()
    assert done is not None and done[0].result.adopted, done and done[0].result.why
    assert two.check() is None  # it sees the refit just done: nothing new to learn
    assert store.versions() == [1]
    # Fewer new outcomes than refit_every, and the interval not yet passed: nothing runs;
    # once the interval passed, the new outcomes are refitted.
    log_learnable_traffic(config, n=20, start=200)
    assert two.check() is None
    later = two.check(now=time.time() + config.adapt.refit_interval_s + 1)
    assert later is not None and later[0].outcomes == 220


def test_no_refitter_without_the_log_or_with_both_triggers_off(tmp_path: Path) -> None:
    assert watch(load_config(adapt_config(tmp_path))) is None  # both 0 in adapt_config
    settings = adapt_config(tmp_path, refit_every=10)
    settings["telemetry"]["log"] = False
    assert watch(load_config(settings)) is None
