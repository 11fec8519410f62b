"""Streaming text: the stop-string holdback (never shows what a stop string
later cuts; shows everything else by the end), checked against the plain
rule "cut the whole text at the first stop string", and incomplete UTF-8
held back by the byte stream and the incremental decoder."""

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore.models.detokenize import ByteStream, IncrementalDecoder, StopText

ALPHABET = "ab c\n"


def whole_text_rule(text: str, stops: list[str]) -> str:
    cuts = [text.find(s) for s in stops if s in text]
    return text[:min(cuts)] if cuts else text


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(st.text(ALPHABET, max_size=4), max_size=12),
       stops=st.lists(st.text(ALPHABET, min_size=1, max_size=4), max_size=3))
def test_stop_text_matches_the_whole_text_rule(pieces, stops):
    stream = StopText(stops)
    shown = ""
    for piece in pieces:
        out = stream.push(piece)
        shown += out
        assert whole_text_rule("".join(pieces), stops).startswith(shown)  # nothing shown is ever cut later
        if stream.stopped:
            break
    if not stream.stopped:
        shown += stream.flush()
    want = whole_text_rule("".join(pieces), stops)
    assert stream.text == want and shown == want


def test_stop_text_holds_a_possible_start():
    s = StopText(["</end>"])
    assert s.push("Hello </") == "Hello "
    assert s.push("e") == ""
    assert s.push("x") == "</ex"
    assert s.push(" </end> more") == " " and s.stopped and s.text == "Hello </ex "


def test_byte_stream_holds_incomplete_utf8():
    d = ByteStream()
    data = "é🤗".encode()
    assert [d.push(b) for b in data] == ["", "é", "", "", "", "🤗"]
    d.push(0xE6)
    assert d.flush() == "\ufffd"


def test_incremental_decoder_holds_replacement_characters():
    table = {1: b"A", 2: b"\xe6", 3: b"\x97", 4: b"\xa5", 5: b" B"}

    def decode(ids):
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")

    d = IncrementalDecoder(decode, context=[1])
    assert [d.push(t) for t in (2, 3, 4, 5)] == ["", "", "日", " B"]
    d.push(2)
    assert d.flush() == "\ufffd"
