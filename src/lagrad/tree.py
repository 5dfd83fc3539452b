"""Pytrees: nested tuples, lists, dicts and namedtuples of arrays, as in ``jax.tree``.

A pytree is a leaf or a container of pytrees. The containers are ``tuple``,
``list``, ``dict``, ``collections.OrderedDict`` and namedtuples; ``None`` is a
container with no children (so it has no leaves and carries no derivative, as
in JAX). Anything else is a leaf. A dict's children are taken in sorted key
order (insertion order when the keys do not sort), an OrderedDict's in its
own order, so ``{"b": 1, "a": 2}`` and ``{"a": 2, "b": 1}`` have one structure.

The functional API flattens every differentiated argument into its leaves,
traces one input per leaf, and rebuilds gradients, tangents and Jacobians in
the argument's structure with :func:`unflatten`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from lagrad.errors import ProgramError

__all__ = ["TreeDef", "flatten", "flatten_with_path", "unflatten", "leaves", "structure",
           "map", "flatten_up_to", "LEAF"]

NoneType = type(None)


@dataclass(frozen=True)
class TreeDef:
    """The structure of a pytree: its containers, without the leaves.

    ``node`` is the container type (``None`` for a leaf, ``NoneType`` for
    ``None``), ``keys`` the dict keys or namedtuple fields in flattening order,
    ``children`` the children's structures. Two trees have equal ``TreeDef``
    when they have the same containers, keys and number of leaves; a TreeDef
    is hashable.
    """

    node: type | None
    keys: tuple[Hashable, ...] = ()
    children: tuple[TreeDef, ...] = ()
    num_leaves: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        count = 1 if self.node is None else sum(c.num_leaves for c in self.children)
        object.__setattr__(self, "num_leaves", count)

    def __repr__(self) -> str:
        return f"TreeDef({unflatten(self, [_STAR] * self.num_leaves)!r})"


class _Star:
    def __repr__(self) -> str:
        return "*"


_STAR = _Star()
LEAF = TreeDef(None)
"""The structure of a single leaf."""


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _dict_keys(d: dict[Any, Any]) -> tuple[Hashable, ...]:
    try:
        return tuple(sorted(d))
    except TypeError:  # keys of mixed types: keep the dict's own order
        return tuple(d)


def _children(x: Any) -> tuple[type | None, tuple[Hashable, ...], list[tuple[str, Any]]]:
    """(node type, keys, [(path step, child)]); node type None for a leaf."""
    kind = type(x)
    if x is None:
        return NoneType, (), []
    if kind is tuple or kind is list:
        return kind, (), [(f"[{i}]", c) for i, c in enumerate(x)]
    if _is_namedtuple(x):
        fields = tuple(kind._fields)
        return kind, fields, [(f".{f}", c) for f, c in zip(fields, x)]
    if kind is dict or kind is OrderedDict:
        keys = _dict_keys(x) if kind is dict else tuple(x)
        return kind, keys, [(f"[{k!r}]", x[k]) for k in keys]
    return None, (), []


def flatten_with_path(tree: Any) -> tuple[list[tuple[str, Any]], TreeDef]:
    """The leaves of ``tree`` with their paths (``"['w1']"``, ``"[0][1]"``,
    ``".bias"``; ``""`` for a tree that is a leaf), and its structure.

    Examples
    --------
    >>> from lagrad import tree
    >>> pairs, treedef = tree.flatten_with_path({"w": [1.0, 2.0], "b": None})
    >>> pairs
    [("['w'][0]", 1.0), ("['w'][1]", 2.0)]
    >>> treedef
    TreeDef({'b': None, 'w': [*, *]})
    """
    pairs: list[tuple[str, Any]] = []

    def walk(x: Any, path: str) -> TreeDef:
        node, keys, children = _children(x)
        if node is None:
            pairs.append((path, x))
            return LEAF
        return TreeDef(node, keys, tuple(walk(c, path + step) for step, c in children))
    return pairs, walk(tree, "")


def flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """The leaves of ``tree``, in order, and its structure.

    Examples
    --------
    >>> import numpy as np
    >>> from lagrad import tree
    >>> leaves, treedef = tree.flatten({"w": np.ones(2), "b": (0.5, None)})
    >>> leaves
    [0.5, array([1., 1.])]
    >>> tree.unflatten(treedef, [1, 2])
    {'b': (1, None), 'w': 2}
    """
    pairs, treedef = flatten_with_path(tree)
    return [leaf for _, leaf in pairs], treedef


def leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree``, in flattening order.

    Examples
    --------
    >>> from lagrad import tree
    >>> tree.leaves([1.0, (2.0, None), {"a": 3.0}])
    [1.0, 2.0, 3.0]
    """
    return flatten(tree)[0]


def structure(tree: Any) -> TreeDef:
    """The structure of ``tree`` (its containers, without the leaves).

    Examples
    --------
    >>> from lagrad import tree
    >>> tree.structure((1.0, [2.0, 3.0])) == tree.structure((0.0, [0.0, 0.0]))
    True
    """
    return flatten(tree)[1]


def unflatten(treedef: TreeDef, leaves: Any) -> Any:
    """The tree of structure ``treedef`` with ``leaves`` in flattening order.

    Raises
    ------
    ProgramError
        If the number of leaves is not ``treedef.num_leaves``.

    Examples
    --------
    >>> from lagrad import tree
    >>> tree.unflatten(tree.structure(((0.0,),)), [7.0])
    ((7.0,),)
    """
    items = list(leaves)
    if len(items) != treedef.num_leaves:
        raise ProgramError(f"unflatten: {len(items)} leaves for a structure with "
                           f"{treedef.num_leaves}")
    it = iter(items)

    def build(t: TreeDef) -> Any:
        if t.node is None:
            return next(it)
        children = [build(c) for c in t.children]
        if t.node is NoneType:
            return None
        if t.node is dict or t.node is OrderedDict:
            return t.node(zip(t.keys, children))
        if t.node is tuple or t.node is list:
            return t.node(children)
        return t.node(*children)  # a namedtuple
    return build(treedef)


def flatten_up_to(treedef: TreeDef, tree: Any, what: str) -> list[Any]:
    """The subtrees of ``tree`` at the leaf positions of ``treedef``.

    ``tree`` must have ``treedef``'s containers down to its leaves; below a
    leaf position anything is taken whole (a list given where ``treedef`` has
    an array is the array's value). ``what`` names ``tree`` in the error.

    Raises
    ------
    ProgramError
        If a container of ``tree`` differs from ``treedef``'s, naming its path.

    Examples
    --------
    >>> from lagrad import tree
    >>> tree.flatten_up_to(tree.structure((0.0, 0.0)), ([1.0, 2.0], 3.0), "tangent")
    [[1.0, 2.0], 3.0]
    """
    out: list[Any] = []

    def walk(t: TreeDef, x: Any, path: str) -> None:
        if t.node is None:
            out.append(x)
            return
        node, keys, children = _children(x)
        if node is not t.node or keys != t.keys or len(children) != len(t.children):
            raise ProgramError(f"{what}{path} has structure {_describe(structure(x))}, "
                               f"expected {_describe(t)}; give it the structure of its primal")
        for sub, (step, c) in zip(t.children, children):
            walk(sub, c, path + step)
    walk(treedef, tree, "")
    return out


def _describe(t: TreeDef) -> str:
    return "a leaf" if t.node is None else repr(unflatten(t, [_STAR] * t.num_leaves))


def map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leaf by leaf: ``fn(leaf, *leaves of rest)``, in ``tree``'s structure.

    Every tree in ``rest`` must have ``tree``'s containers down to its leaves
    (as in JAX, ``tree`` is a prefix of each).

    Raises
    ------
    ProgramError
        If a tree in ``rest`` has other containers, naming the path.

    Examples
    --------
    >>> import numpy as np
    >>> from lagrad import tree
    >>> params = {"w": np.ones(2), "b": 0.5}
    >>> grads = {"w": np.array([1.0, -1.0]), "b": 2.0}
    >>> tree.map(lambda p, g: p - 0.1 * g, params, grads)
    {'b': 0.3, 'w': array([0.9, 1.1])}
    """
    flat, treedef = flatten(tree)
    others = [flatten_up_to(treedef, r, f"tree.map: tree {k + 1}") for k, r in enumerate(rest)]
    return unflatten(treedef, [fn(*args) for args in zip(flat, *others)])
