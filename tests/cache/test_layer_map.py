"""The layer map: uniform g(m) = m*N/M as in the paper, explicit lists checked against both models."""

import pytest

from cache.runtime.errors import UserError
from cache.runtime.layer_map import resolve_layer_map, uniform_layer_map


def test_uniform_layer_map():
    assert uniform_layer_map(4, 12) == [3, 6, 9, 12]
    assert uniform_layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    assert uniform_layer_map(3, 6) == [2, 4, 6] and uniform_layer_map(2, 6) == [3, 6]


def test_explicit_maps():
    assert resolve_layer_map("2,4,6", 3, 6) == [2, 4, 6]
    assert resolve_layer_map("0,2,4,6", 3, 6) == [2, 4, 6]  # g(0) = 0 may be written
    assert resolve_layer_map("3,6", None, 6) == [3, 6]  # M from the list
    assert resolve_layer_map("uniform", 2, 6) == [3, 6]


@pytest.mark.parametrize("text, student_layers, expected", [
    ("2,4", 3, "need 3 teacher layers in 1..6"),
    ("2,4,7", 3, "need 3 teacher layers in 1..6"),
    ("a,b", 2, "is not 'uniform' or a list"),
    ("uniform", None, "needs the number of student layers"),
])
def test_bad_maps(text, student_layers, expected):
    with pytest.raises(UserError, match=expected):
        resolve_layer_map(text, student_layers, 6)
