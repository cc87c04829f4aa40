"""values: what a session may hold, checked and copied at assignment."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgi_session.values import check_key, checked_copy, copy_value, decode, encode


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -1,
        2**80,
        1.5,
        -0.0,
        1e300,
        "",
        "NUL \x00 and a lone surrogate \ud800",
        "text",
        [],
        {},
        [1, "a", None, [2, {"b": [3]}]],
    ],
    ids=repr,
)
def test_json_values_are_accepted_and_equal(value: Any) -> None:
    assert checked_copy("k", value) == value


def test_containers_are_deep_copied_scalars_are_not() -> None:
    text = "shared"
    assert checked_copy("k", text) is text
    nested = {"list": [1, {"deep": []}]}
    copy = checked_copy("k", nested)
    assert copy == nested and copy is not nested
    assert copy["list"] is not nested["list"] and copy["list"][1] is not nested["list"][1]
    again = copy_value(copy)
    assert again == copy and again["list"] is not copy["list"]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (object(), "object is not a JSON type"),
        ({1, 2}, "set is not a JSON type"),
        (b"bytes", "bytes is not a JSON type"),
        ({1: "x"}, "a dict key of type int is not a str"),
        ([{"ok": [object()]}], "object is not a JSON type"),
    ],
    ids=["object", "set", "bytes", "int-key", "nested"],
)
def test_other_values_are_refused_naming_the_key(value: Any, why: str) -> None:
    with pytest.raises(TypeError, match=rf"key 'cart'.*{why}"):
        checked_copy("cart", value)


def test_absurd_nesting_is_refused_not_a_recursion_error() -> None:
    value: list[Any] = []
    for _ in range(500):
        value = [value]
    with pytest.raises(ValueError, match="nested more than"):
        checked_copy("k", value)


def test_self_referencing_values_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested more than"):
        checked_copy("k", loop)


@pytest.mark.parametrize("key", ["", 0, None, b"k", ("a",)], ids=repr)
def test_keys_are_non_empty_str(key: Any) -> None:
    with pytest.raises(TypeError, match="non-empty str"):
        check_key(key)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (float("inf"), "not a finite float"),
        (float("-inf"), "not a finite float"),
        (float("nan"), "not a finite float"),
        (10**4301, "an int of more than"),
        ([{"deep": float("nan")}], "not a finite float"),
    ],
    ids=["inf", "-inf", "nan", "int-4301-digits", "nested-nan"],
)
def test_values_no_store_could_hold_are_refused(value: Any, why: str) -> None:
    with pytest.raises(ValueError, match=rf"key 'cart'.*{why}"):
        checked_copy("cart", value)


def test_a_tuple_is_stored_as_a_list() -> None:
    assert checked_copy("k", ("a", (1, 2))) == ["a", [1, 2]]


@pytest.mark.parametrize(
    "value",
    [1.0, -0.0, 1e300, 5e-324, 2**13999, "\x00", "\ud800", "é", {"\ud800": ["\x00"]}],
    ids=repr,
)
def test_the_codec_round_trips_exactly_in_ascii_safe_text(value: Any) -> None:
    text = encode(value)
    text.encode("utf-8")  # any store can hold it
    assert "\x00" not in text
    back = decode(text)
    assert back == value and type(back) is type(value)
    assert repr(back) == repr(value)  # -0.0 stays -0.0, a float stays a float


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)


@given(_JSON)
def test_the_codec_writes_what_the_json_module_writes_and_reads_any_json(value: Any) -> None:
    """encode() takes shortcuts for ints, floats and str: the text must stay
    the json module's (stored sessions are read by older and newer versions)."""
    text = encode(value)
    reference = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if reference.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == reference:
        assert text == reference
    assert decode(text) == value
    assert decode(f" {text}\n") == value  # valid JSON from elsewhere (a store's own output)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_the_codec_refuses_what_json_cannot_hold(value: float) -> None:
    with pytest.raises(ValueError):
        encode(value)


@pytest.mark.parametrize("text", ["", "x", "{", "1 2", '{"a":}', "[1,]"])
def test_decoding_text_that_is_not_one_json_value_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        decode(text)
