"""Header values that h11 accepts whatever the text: printable, trimmed, bounded, word cut."""

from __future__ import annotations

import random

from litellm_plugin.headers import HEADER_MAX, header_value


def test_spaces_control_characters_and_unicode_become_one_clean_line() -> None:
    assert header_value("  a\r\n\tb\x00c é  ") == "a b c"
    assert header_value("") == "-" and header_value(" \n ") == "-"


def test_long_text_is_cut_at_a_word_boundary_with_an_ellipsis() -> None:
    text = "local upstream failed:" + " " * 250 + "end " + "word " * 100
    value = header_value(text)
    assert len(value) <= HEADER_MAX and value.endswith("...")
    assert not value[:-3].endswith(" ") and "wor..." not in value
    assert header_value("x" * 1000) == "x" * (HEADER_MAX - 3) + "..."  # no space: cut mid-word


def test_any_text_gives_a_legal_header_value() -> None:
    rng = random.Random(15)
    alphabet = " \t\r\n\x00\x7f\x1babcXYZ é中🙂\u2028:;\"'"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 2000)))
        value = header_value(text)
        assert 1 <= len(value) <= HEADER_MAX
        assert value == value.strip() and all(32 <= ord(ch) < 127 for ch in value)
