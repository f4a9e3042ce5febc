"""The cache's parts on their own: partition keys, anchors, the vector index, both stores."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.servers import Service, start_redis
from tierwise.cache import evaluate, frame, keys
from tierwise.cache.index import VectorIndex
from tierwise.cache.store import DiskStore, Entry, RedisStore, Store
from tierwise.request import ChatRequest, Scope


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


SCENARIOS = "Which scenario is morally wrong? Scenario 1 | {} Scenario 2 | I paid my taxes."


def test_frame_middles_are_the_differing_clauses() -> None:
    first = SCENARIOS.format("I sprayed salt all over my neighbor's vegetable garden.")
    second = SCENARIOS.format("I scraped the paint off my house before I repainted it.")
    found = frame.middles(first, second)
    assert found is not None and found.share >= frame.FRAME_SHARE
    assert found.first == "sprayed salt all over my neighbor's vegetable garden"
    assert found.second == "scraped the paint off my house before I repainted it"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # a paraphrase rewords throughout: there is no frame
        ("Gradio is a tool to build demos.", "With Gradio, developers create demos quickly."),
        # a frame around one word: left to the whole question's cosine
        ("The `cast` function casts table values.", "The `cast` function transforms table values."),
        ("", ""),
    ],
)
def test_no_frame_check_without_a_frame_and_a_long_middle(first: str, second: str) -> None:
    assert frame.middles(first, second) is None


def test_a_text_plus_a_clause_is_not_the_same_question() -> None:
    def never(texts: object) -> np.ndarray:
        raise AssertionError("an empty middle needs no embedding")

    base = "Name the planets of the solar system in order from the sun."
    longer = base[:-1] + " and give the number of known moons of each one of them."
    assert frame.middle_similarity(base, longer, never) == 0.0


def test_eval_cache_serves_as_the_cache_does() -> None:
    framed = evaluate.Outcome(
        candidates=[(0.9, "near miss", 0.3), (0.8, "paraphrase", None)],
        expected="paraphrase",
        exact=None,
        semantic_allowed=True,
    )
    assert evaluate.served(framed, 0.85) == "near miss"  # no frame check: the best cosine
    assert evaluate.served(framed, 0.75, 0.7) == "paraphrase"  # the framed one is passed over
    assert evaluate.served(framed, 0.85, 0.7) is None
    too_long = evaluate.Outcome(framed.candidates, None, exact=None, semantic_allowed=False)
    assert evaluate.served(too_long, 0.5) is None
    repeat = evaluate.Outcome([], None, exact="same text", semantic_allowed=False)
    assert evaluate.served(repeat, 0.99, 0.9) == "same text"


def test_eval_cache_chooses_the_most_hits_within_the_false_hit_margin() -> None:
    n = len(evaluate.THRESHOLDS)

    def curves(false_until: float, hits: float) -> dict[str, list[float]]:
        """False hits above the margin below `false_until`; hits fall off past 0.8."""
        return {
            "paraphrase": [hits if t <= 0.8 else hits / 2 for t in evaluate.THRESHOLDS],
            "gsm8k-number-swap": [0.0] * n,
            "mmlu-same-subject": [0.05 if t < false_until else 0.01 for t in evaluate.THRESHOLDS],
        }

    design = {f"{ft:.2f}": curves(0.9, 0.5) for ft in evaluate.FRAME_THRESHOLDS}
    design["0.70"] = curves(0.75, 0.9)  # this frame check allows 0.75 at 90% hits
    design["0.80"] = curves(0.75, 0.9)  # as good: the stricter check wins the tie ...
    assert evaluate.choose(design) == (0.8, 0.8)  # ... and the highest equally good cosine
    nothing = {f"{ft:.2f}": curves(1.0, 0.9) for ft in evaluate.FRAME_THRESHOLDS}
    assert evaluate.choose(nothing) == (evaluate.THRESHOLDS[-1], evaluate.FRAME_THRESHOLDS[-1])


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
