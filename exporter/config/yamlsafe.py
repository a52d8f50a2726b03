"""YAML for the configuration: safe tags only, no duplicate keys, no bombs.

`yaml.safe_load` lets the last of two equal keys win without a word, builds a 5,000-deep
nesting until Python's recursion limit raises, and expands a "billion laughs" of aliases into
structures that validation then walks for hours. `safe_yaml` composes the document first,
refuses it when it nests deeper than `MAX_DEPTH` or would expand to more than `MAX_NODES`
nodes, then constructs it refusing duplicate keys; every refusal is a `yaml.YAMLError` with
the place in the file where one is known.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_DEPTH = 64
"""Deeper than any configuration augur reads (queries[0].detectors.ensemble.members[0]... is 8)."""
MAX_NODES = 200_000
"""Nodes after expanding aliases; a configuration with a thousand queries has a few tens of
thousands."""

_MERGE = "tag:yaml.org,2002:merge"
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type, misc]
    """The safe loader (libyaml's when available) refusing duplicate keys in a mapping."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue  # `<<: *base` then overriding a key of base is the point of merging
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # unhashable: the base constructor reports it with its place
                if first is not key_node:
                    raise ConstructorError(
                        f"in the mapping starting at line {node.start_mark.line + 1}",
                        None,
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1}); "
                        "YAML would keep only the last: remove one",
                        key_node.start_mark,
                    )
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_shape(root: Node) -> None:
    """Refuse a document nested deeper than MAX_DEPTH or expanding past MAX_NODES nodes.

    Iterative, with each node's expanded size and depth memoised: aliases make the tree a
    graph, walked once per distinct node however often it is referenced.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[key] > MAX_DEPTH:
                raise ConstructorError(
                    None,
                    None,
                    f"nested deeper than {MAX_DEPTH} levels; no setting is that deep",
                    node.start_mark,
                )
            if size[key] > MAX_NODES:
                raise ConstructorError(
                    None,
                    None,
                    f"expands to more than {MAX_NODES} values (aliases repeated over and "
                    "over, a YAML bomb?)",
                    node.start_mark,
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConstructorError(
                None, None, "an alias refers to a mapping or list that contains it", node.start_mark
            )
        if isinstance(node, ScalarNode):
            size[key], depth[key] = 1, 1
            continue
        on_path.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)


def safe_yaml(text: str) -> Any:
    """The document in `text` as Python values; a `yaml.YAMLError` for anything refused."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels") from None
        if node is None:
            return None
        _check_shape(node)
        try:
            return loader.construct_document(node)
        except (ValueError, TypeError, OverflowError) as exc:
            # A scalar that resolves to a type and cannot be built, e.g. the date 2024-02-30.
            raise ConstructorError(None, None, f"cannot read a value: {exc}") from None
    finally:
        loader.dispose()
