"""RFC 6901 JSON pointers: the RFC's own example document and every pointer of its section 5."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.jsonpointer import MISSING, Pointer

# RFC 6901, section 5.
DOCUMENT = json.loads(r"""
   {
      "foo": ["bar", "baz"],
      "": 0,
      "a/b": 1,
      "c%d": 2,
      "e^f": 3,
      "g|h": 4,
      "i\\j": 5,
      "k\"l": 6,
      " ": 7,
      "m~n": 8
   }
""")


@pytest.mark.parametrize("pointer, value", [
    ("", DOCUMENT),
    ("/foo", ["bar", "baz"]),
    ("/foo/0", "bar"),
    ("/", 0),
    ("/a~1b", 1),
    ("/c%d", 2),
    ("/e^f", 3),
    ("/g|h", 4),
    ("/i\\j", 5),
    ("/k\"l", 6),
    ("/ ", 7),
    ("/m~0n", 8),
])
def test_rfc6901_section_5_examples(pointer, value):
    assert Pointer(pointer).resolve(DOCUMENT) == value


def test_unescaping_order_is_tilde_one_then_tilde_zero():
    # "~01" is "~1" as a key (not "/"): ~1 is replaced first, then ~0.
    assert Pointer("/~01").resolve({"~1": "right", "/": "wrong"}) == "right"


@pytest.mark.parametrize("pointer", ["/foo/2", "/foo/-", "/foo/01", "/foo/+1", "/foo/0/x", "/nope", "/ /x"])
def test_what_is_not_there_is_missing(pointer):
    assert Pointer(pointer).resolve(DOCUMENT) is MISSING


@pytest.mark.parametrize("text", ["foo", "#/foo", "/a~2b", "/a~"])
def test_malformed_pointers_are_refused(text):
    with pytest.raises(ValueError, match="RFC 6901"):
        Pointer(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_every_value_in_a_document_has_a_pointer_that_finds_it(document):
    def walk(node, path):
        yield path, node
        if isinstance(node, dict):
            for key, child in node.items():
                yield from walk(child, path + "/" + key.replace("~", "~0").replace("/", "~1"))
        elif isinstance(node, list):
            for i, child in enumerate(node):
                yield from walk(child, f"{path}/{i}")

    for path, node in walk(document, ""):
        assert Pointer(path).resolve(document) == node
