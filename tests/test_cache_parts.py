"""The cache's parts on their own: partition keys, anchors, the vector index, both stores."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.servers import Service, start_redis
from tierwise.cache import budget, keys
from tierwise.cache.index import VectorIndex
from tierwise.cache.store import DiskStore, Entry, RedisStore, Store
from tierwise.request import ChatRequest, Scope
from tierwise.training import cache_eval as evaluate


def chat(*turns: tuple[str, str], scope: Scope | None = None, **body: object) -> ChatRequest:
    messages = [{"role": role, "content": text} for role, text in turns]
    return ChatRequest.from_openai({"model": "auto", "messages": messages, **body}, scope=scope)


ALICE = Scope(user="alice", api_key="sk-a")
BOB = Scope(user="bob", api_key="sk-b")


def test_partition_covers_scope_context_and_answer_shaping() -> None:
    base = chat(("system", "Be brief."), ("user", "What is RAM?"), scope=ALICE)
    same_question_later = chat(
        ("system", "Be brief."), ("user", "What is RAM, exactly?"), scope=ALICE
    )
    assert keys.context_part(base) == keys.context_part(same_question_later)
    variants = [
        chat(("system", "Be verbose."), ("user", "What is RAM?"), scope=ALICE),
        chat(("user", "hi"), ("assistant", "hello"), ("user", "What is RAM?"), scope=ALICE),
        chat(("system", "Be brief."), ("user", "What is RAM?"), scope=ALICE, max_tokens=5),
        chat(("system", "Be brief."), ("user", "What is RAM?"), scope=ALICE, model="other"),
    ]
    for variant in variants:
        assert keys.context_part(variant) != keys.context_part(base)
    assert keys.scope_part(base, "user") != keys.scope_part(chat(("user", "x"), scope=BOB), "user")
    assert keys.scope_part(chat(("user", "x")), "user") is None  # anonymous: not cacheable
    assert keys.scope_part(chat(("user", "x")), "global") == "global"
    team_a = chat(("user", "x"), scope=Scope(user="a", team="lab"))
    team_b = chat(("user", "x"), scope=Scope(user="b", team="lab"))
    assert keys.scope_part(team_a, "team") == keys.scope_part(team_b, "team")
    assert keys.scope_part(team_a, "user") != keys.scope_part(team_b, "user")


def test_exact_key_ignores_case_and_spacing_only() -> None:
    assert keys.exact_key("p", "What  is RAM?") == keys.exact_key("p", " what is ram? ")
    assert keys.exact_key("p", "What is RAM?") != keys.exact_key("p", "What is ROM?")
    assert keys.exact_key("p", "x") != keys.exact_key("q", "x")


def test_anchors_are_numbers_and_names() -> None:
    assert keys.anchors("What is the capital of France?") == {"france"}
    assert keys.anchors("Yesterday Tom had 3 apples and bought 12 more.") == {"tom", "3", "12"}
    assert keys.anchors("Tom has 3 apples.") == {"3"}  # a sentence-initial capital says nothing
    assert keys.anchors("PyTorch runs on a GPU.") == {"pytorch", "gpu"}  # name-shaped anywhere


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        ("What is the capital of France?", "Which city is the capital of France?", True),
        ("What is the capital of France?", "What is the capital of Japan?", False),
        ("PyTorch has cutting-edge diffusers.", "Diffusers are state of the art in PyTorch.", True),
        ("Tom has 3 apples and buys 12 more.", "Tom has 3 apples and buys 13 more.", False),
        ("John has 2 houses with 3 rooms each.", "John has 3 houses with 3 rooms each.", False),
        ("He has 2 cats and 2 dogs.", "There are 2 dogs and 2 cats that he has.", True),
        ("How do I sort a list in Python?", "How can a Python list be sorted?", True),
        ("How do I sort a list in Python?", "How do I sort a list in Rust?", False),
    ],
)
def test_anchor_guard(a: str, b: str, agree: bool) -> None:
    assert keys.anchors_agree(a, b) is agree


def _unit(rng: np.random.Generator, n: int, dim: int = 64) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_length_bands_count_the_words_that_name_the_subject() -> None:
    assert budget.content_words("What is magnesium?") == 1
    assert budget.content_words("What is magnesium sulphur?") == 2
    assert budget.content_words("How do I, how can I do it?") == 0
    assert budget.band(1, 2) == 0  # "What is magnesium (sulphur)?": the strictest band
    assert budget.band(2, 13) == budget.band(13, 2) == len(budget.BANDS) - 1


def test_the_budget_picks_per_band_the_lowest_threshold_within_it() -> None:
    curves = budget.Curves(
        (0.8, 0.9, 0.95),
        (
            (0.10, 0.03, 0.01),  # short questions: look-alikes reach high cosines
            (0.02, 0.01, 0.0),
            (0.0, 0.0, 0.0),
            (0.05, 0.05, 0.05),  # never within a 2% budget: no semantic hits at all
            (0.01, 0.0, 0.0),
        ),
    )
    assert curves.for_budget(0.02) == (0.95, 0.8, 0.8, 1.01, 0.8)
    assert curves.for_budget(0.05) == (0.9, 0.8, 0.8, 0.8, 0.8)
    assert budget.Curves.from_dict(curves.as_dict()) == curves


def test_the_packaged_curves_give_stricter_thresholds_for_smaller_budgets() -> None:
    strict = budget.Thresholds.for_budget(0.005).by_band
    default = budget.Thresholds.for_budget(0.02).by_band
    loose = budget.Thresholds.for_budget(0.1).by_band
    assert all(s >= d >= x for s, d, x in zip(strict, default, loose, strict=True))
    assert strict != loose
    assert default[0] > default[-2]  # short look-alikes need a higher cosine than long ones


def test_eval_cache_serves_as_the_cache_does() -> None:
    by_band = (0.95, 0.9, 0.85, 0.8, 0.8)
    near = evaluate.Outcome(exact=False, allowed=True, cosine=0.92, band=0)
    longer = evaluate.Outcome(exact=False, allowed=True, cosine=0.92, band=2)
    guarded = evaluate.Outcome(exact=False, allowed=False, cosine=0.99, band=4)
    repeat = evaluate.Outcome(exact=True, allowed=False, cosine=1.0, band=0)
    assert evaluate.hit_rate([near], by_band) == 0.0  # a short pair needs 0.95
    assert evaluate.hit_rate([longer], by_band) == 1.0
    assert evaluate.hit_rate([guarded], by_band) == 0.0  # too long, or other numbers or names
    assert evaluate.hit_rate([repeat], (1.01,) * 5) == 1.0  # exact repeats always
    assert evaluate.hit_rate([near, longer, guarded, repeat], by_band) == 0.5


def test_eval_cache_replays_the_static_gate() -> None:
    """A pair whose static vectors are further apart than STATIC_FLOOR is a miss, as in the
    cache, whatever its MiniLM cosine."""
    family = evaluate.Family("f", [("a b c", "a b d"), ("a b c", "x y z")])
    vectors = {t: np.array([1.0, 0.0], dtype=np.float32) for t in ("a b c", "a b d", "x y z")}
    covered = dict.fromkeys(vectors, True)
    statics = {
        "a b c": np.array([1.0, 0.0], dtype=np.float32),
        "a b d": np.array([0.8, 0.6], dtype=np.float32),  # static cosine 0.8
        "x y z": np.array([0.0, 1.0], dtype=np.float32),  # static cosine 0
    }
    ungated = evaluate.replay(family, vectors, covered, guard=False)
    gated = evaluate.replay(family, vectors, covered, guard=False, statics=statics)
    assert [o.allowed for o in ungated] == [True, True]
    assert [o.allowed for o in gated] == [True, False]


def test_eval_cache_curves_take_the_worst_budget_family_per_band() -> None:
    def pairs(cosine: float, band: int, n: int = 40) -> list[evaluate.Outcome]:
        return [evaluate.Outcome(False, True, cosine, band)] * n

    design = {
        "qqp-non-duplicate": pairs(0.9, 0) + pairs(0.75, 1),
        "mmlu-same-subject": pairs(0.85, 1),
        "gsm8k-number-swap": pairs(0.99, 2, n=5),  # too few in its band to count
        "paraphrase": pairs(0.99, 3),  # rewordings never count as false hits
    }
    curves = evaluate.band_curves(design)
    at = dict(zip(curves.thresholds, zip(*curves.rates, strict=True), strict=True))
    assert at[0.85] == (1.0, 1.0, 0.0, 0.0, 0.0)
    assert at[0.86] == (1.0, 0.0, 0.0, 0.0, 0.0)
    assert at[0.91] == (0.0,) * 5
    assert curves.for_budget(0.0)[:2] == (0.91, 0.86)


def test_flat_index_finds_the_exact_best_match_and_forgets_removed() -> None:
    rng = np.random.default_rng(0)
    data = _unit(rng, 500)
    index = VectorIndex(64)
    for i, v in enumerate(data):
        index.add(f"v{i}", v)
    query = data[123] + 0.01 * _unit(rng, 1)[0]
    best = index.search(query / np.linalg.norm(query), k=3)
    assert best[0][1] == "v123" and best[0][0] > 0.99
    assert [s for s, _ in best] == sorted((s for s, _ in best), reverse=True)
    index.remove("v123")
    assert "v123" not in index and len(index) == 499
    assert all(i != "v123" for _, i in index.search(query, k=10))
    # removing swaps the last row in: that vector must still be found under its own id
    assert index.search(data[499], k=1)[0][1] == "v499"


def test_ivf_index_recalls_near_duplicates() -> None:
    """Past ivf_from the index clusters; near-duplicates (cosine > 0.9) are still found."""
    rng = np.random.default_rng(1)
    centers = _unit(rng, 40)
    data = centers[rng.integers(0, 40, 6000)] + 0.35 * _unit(rng, 6000) / np.sqrt(1)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = VectorIndex(64, ivf_from=2000, nlist=64, nprobe=8)
    for i, v in enumerate(data):
        index.add(f"v{i}", v)
    assert index._centroids is not None
    found = 0
    for i in rng.choice(6000, 300, replace=False):
        noisy = data[i] + 0.05 * _unit(rng, 1)[0]
        noisy /= np.linalg.norm(noisy)
        found += index.search(noisy, k=1)[0][1] == f"v{i}"
    assert found / 300 >= 0.97


def _entry(i: int, partition: str = "p") -> Entry:
    return Entry(
        id=f"id{i}",
        partition=partition,
        exact_key=f"x{i}",
        question=f"question {i}",
        vector=np.full(4, i, dtype=np.float32),
        response={"content": f"answer {i}"},
        tier="local",
        tier_order=0,
        created=time.time(),
        expires=time.time() + 60,
    )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Service]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server missing: run scripts/system-deps.sh (scripts/test.sh does)")
    service = start_redis(tmp_path)
    yield service
    service.stop()


@pytest.fixture(params=["disk", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "disk":
        store: Store = DiskStore(tmp_path / "cache")
    else:
        service = request.getfixturevalue("redis_server")
        store = RedisStore(service.url)
    yield store
    store.close()


@pytest.mark.integration
def test_store_round_trip_and_change_feed(store: Store) -> None:
    assert store.latest() == 0
    seqs = [store.add(_entry(i), ttl_s=60) for i in range(3)]
    assert seqs == [1, 2, 3]
    got = store.get("id1")
    assert got is not None and got.response == {"content": "answer 1"}
    assert np.array_equal(got.vector, np.full(4, 1, dtype=np.float32))
    assert store.exact("x2") == "id2"
    assert [(n, e.id) for n, e in store.since(1)] == [(2, "id1"), (3, "id2")]
    store.delete("id1")
    assert store.get("id1") is None
    assert [e.id for _, e in store.since(0)] == ["id0", "id2"]


@pytest.mark.integration
def test_store_entries_expire(store: Store) -> None:
    store.add(_entry(7), ttl_s=1)
    assert store.get("id7") is not None
    time.sleep(2.1)
    assert store.get("id7") is None and store.exact("x7") is None


def test_corrupt_cache_directory_is_moved_aside_and_rebuilt(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    directory = tmp_path / "cache"
    directory.mkdir()
    (directory / "cache.db").write_bytes(b"this is not a sqlite database" * 100)
    store = DiskStore(directory)
    store.add(_entry(1), ttl_s=60)
    assert store.get("id1") is not None
    assert "is corrupt" in caplog.text
    assert any(p.name.startswith("cache.corrupt-") for p in tmp_path.iterdir())
    store.close()


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def test_eval_cache_reports_each_family_and_writes_the_curves(tmp_path: Path) -> None:
    """The command end to end on a small data folder shaped like ../shared/data."""
    data = tmp_path / "data"
    topics = ["volcanoes", "glaciers", "tides", "comets", "deserts", "coral reefs"]
    _write_jsonl(
        data / "cache" / "paraphrase_dev.jsonl",
        [{"origin": f"How do {t} form?", "similar": f"What makes {t} form?"} for t in topics],
    )
    qqp = [
        {"stored": f"What are {t}?", "asked": f"What exactly are {t}?", "duplicate": True}
        for t in topics
    ]
    qqp += [
        {"stored": f"Where are {t}?", "asked": f"Why are {t} dangerous?", "duplicate": False}
        for t in topics
    ]
    _write_jsonl(data / "cache" / "qqp_dev.jsonl", qqp)
    _write_jsonl(
        data / "outcomes" / "gsm8k_dev.jsonl",
        [{"text": f"Tom has {n} apples and buys 3 more. How many now?"} for n in (2, 5, 7, 11)],
    )
    _write_jsonl(
        data / "outcomes" / "mmlu_dev.jsonl",
        [{"text": f"Which is true of {t}?\nA. x\nB. y", "bench": "mmlu:geo"} for t in topics],
    )
    _write_jsonl(
        data / "complexity" / "set.jsonl",
        [{"text": f"Explain {t} to a child.", "label": "LOW", "domain": "science"} for t in topics],
    )
    curves, report = tmp_path / "thresholds.json", tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tierwise",
            "eval-cache",
            "--data",
            str(data),
            "--write-thresholds",
            str(curves),
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    for family in ("paraphrase", "qqp-duplicate", "qqp-non-duplicate", "gsm8k-number-swap"):
        assert family in done.stdout
    assert "max_false_hit_rate 0.020" in done.stdout
    written = budget.Curves.from_dict(json.loads(curves.read_text()))
    assert written.thresholds == evaluate.THRESHOLDS and len(written.rates) == len(budget.BANDS)
    pairs = json.loads(report.read_text())["pairs"]
    assert sum(n for half in pairs.values() for n in half.values()) > 20
