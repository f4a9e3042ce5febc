"""Static embedding: unit rows from the wheel's vectors, similar texts close, bounded cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tierwise.static_encoder import StaticEncoder, StaticEncoderUnavailable, shared_static_encoder


def _encoder() -> StaticEncoder:
    try:
        return shared_static_encoder()
    except StaticEncoderUnavailable as exc:
        pytest.skip(f"static embedding not available here: {exc}")


def test_rows_are_unit_float32_and_deterministic() -> None:
    encoder = _encoder()
    texts = ["How do I reverse a list in Python?", "Write a haiku about rain.", ""]
    rows = encoder.encode(texts)
    assert rows.dtype == np.float32 and rows.shape == (3, encoder.dim) == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(rows[:2], axis=1), 1.0, atol=1e-5)
    assert not rows[2].any()  # no tokens, no direction
    np.testing.assert_array_equal(rows, encoder.encode(texts))


def test_paraphrases_are_closer_than_unrelated_texts() -> None:
    a, b, c = _encoder().encode(
        [
            "How can I reverse a list in Python?",
            "What is the way to reverse a Python list?",
            "Suggest a recipe for a vegetarian lasagna.",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.1


def test_long_texts_are_read_from_head_and_tail() -> None:
    encoder = _encoder()
    assert len(encoder.token_ids("word " * 100_000)) < 5_000


def test_a_directory_without_the_vectors_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(StaticEncoderUnavailable, match="tierwise\\[learned\\]"):
        StaticEncoder(tmp_path)
