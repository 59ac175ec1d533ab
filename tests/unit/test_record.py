"""The value classes that replaced dataclasses on the start-up paths (layerctl/record.py)
behave as their dataclasses did: equality, hashing, copies, repr, state.json."""

from __future__ import annotations

import json
import os
import pickle

import pytest

from layerctl.containers.state import Container, load, save, state_dir
from layerctl.images import ImageName
from layerctl.store.diff import Change
from layerctl.store.fstree import Dir, DirRef
from layerctl.store.journal import Entry
from layerctl.store.layers import Layer
from layerctl.store.meta import FILE, Meta

ROOT = DirRef(b"\x01" * 20, b"\x02" * 20)


def test_frozen_values_compare_and_hash_by_their_fields():
    a = Meta(FILE, 0o644, size=3, xattrs=((b"user.x", b"1"),))
    b = Meta(FILE, 0o644, 0, 0, 0, 3, None, ((b"user.x", b"1"),), None)  # positional
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != a.replace(mode=0o600) and a != a.replace(link=b"x")
    assert a.replace(size=9).size == 9 and a.size == 3  # a copy, the original kept
    assert a.without_link() is a and a.replace(link=b"p").without_link() == a
    assert (a == (FILE, 0o644)) is False  # no tuple semantics
    assert DirRef(b"a", b"b") == DirRef(b"a", b"b") != DirRef(b"a", b"c")
    assert ImageName("x") == ImageName("x", "latest") and str(ImageName("x")) == "x:latest"
    assert {ImageName("x"): 1}[ImageName("x", "latest")] == 1
    assert Change(b"p", "A", new=a) == Change(b"p", "A", new=b) != Change(b"p", "C", new=a)
    assert pickle.loads(pickle.dumps(a)) == a


def test_a_value_of_another_class_is_never_equal():
    assert DirRef(b"a", b"b") != Meta(FILE, 0)
    assert (DirRef(b"a", b"b") == ("a", "b")) is False


def test_layer_equality_leaves_out_config_and_trailers():
    one = Layer("id", None, ROOT, {"a": 1}, trailers={"DiffID": "sha256:1"})
    two = Layer("id", None, ROOT, {"b": 2})
    assert one == two and hash(one) == hash(two)
    assert one != Layer("id", None, ROOT, {}, message="other")
    assert two.trailers == {} and two.trailers is not Layer("x", None, ROOT, {}).trailers


def test_mutable_records_are_unhashable_and_their_defaults_not_shared():
    own = Meta("d", 0o755)
    first, second = Dir(own), Dir(own)
    first.files[b"f"] = (Meta(FILE, 0o644), b"\0" * 20)
    assert second.files == {} and first != second
    with pytest.raises(TypeError):
        hash(first)
    e = Entry("M", "op", 1, ["a"], "label")
    with pytest.raises(TypeError):
        hash(e)
    assert repr(e) == "Entry(kind='M', op='op', time=1, fields=['a'], label='label')"


def test_container_state_json_has_the_dataclass_field_names(store):
    """state.json written before this change (dataclasses.asdict) loads, and a save
    writes the same keys."""
    c = Container("a" * 64, "box", "img:1", "vfs", 1.5, lower=None, driver_note="",
                  extra={"k": 1})
    d = state_dir(store, c.id)
    os.makedirs(d)
    save(store, c)
    with open(os.path.join(d, "state.json")) as f:
        written = json.load(f)
    assert sorted(written) == sorted(["id", "name", "image", "driver", "created", "lower",
                                      "driver_note", "extra"])
    assert load(store, c.id) == c
    assert Container("b", "n", "i", "vfs", 0.0).extra is not Container(
        "c", "n", "i", "vfs", 0.0).extra
