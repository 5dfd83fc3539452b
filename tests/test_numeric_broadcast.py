"""lagrad.numeric.broadcast: np.broadcast_to without its cost when nothing is broadcast."""

from __future__ import annotations

import numpy as np
import pytest

from lagrad.numeric import broadcast


def test_same_shape_is_returned_as_is() -> None:
    x = np.arange(6.0).reshape(2, 3)
    assert broadcast(x, (2, 3)) is x


@pytest.mark.parametrize(("value", "shape"), [(np.arange(3.0), (2, 3)), (2.5, (4,)),
                                              (np.ones((2, 1)), (2, 3))])
def test_other_shapes_are_numpys_broadcast(value: object, shape: tuple[int, ...]) -> None:
    out = broadcast(value, shape)
    np.testing.assert_array_equal(out, np.broadcast_to(value, shape))
    assert out.shape == shape and not out.flags.writeable


def test_incompatible_shapes_raise_as_numpy() -> None:
    with pytest.raises(ValueError):
        broadcast(np.ones(3), (2, 4))
