"""`tierwise bench relay` end to end, small: real relay, stand-in, worker and consumers."""

from __future__ import annotations

import pytest

from tierwise.bench import relay

pytestmark = pytest.mark.integration


def test_bench_relay_checks_every_stream_quiet_and_loaded() -> None:
    results = relay.run(
        ttft_runs=3, throughput_tokens=2000, streams=12, tokens=60, runs=2, loaded=True
    )
    for run in results["concurrent_runs"] + results["loaded_runs"]:
        assert run["tokens_received"] == 12 * 60, run
        assert (run["lost"], run["duplicated"], run["misrouted"]) == (0, 0, 0)
        assert run["unfinished_streams"] == 0 and run["errors"] == []
    text = relay.format_results(results)
    assert "loaded (2 busy loops) all 2 runs: lost 0, duplicated 0, unfinished 0 of 24" in text
    assert "quiet  all 2 runs: lost 0" in text
    assert results["load_at_start"]["cores"] >= 1 and "load average" in text
