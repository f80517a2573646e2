"""Read a catalog's YAML safely, refusing what YAML itself lets pass: a key given twice.

PyYAML keeps the last of two equal keys without a word, so a copied entry left under the same
name, or a second ``split:`` in one entry, silently replaced the first. A syntax error becomes one
line with the file, line and column, instead of PyYAML's block with a caret.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from segpipe.errors import CatalogError


class _UniqueKeys(yaml.SafeLoader):
    """The safe loader, refusing a mapping that gives a key twice."""


def _mapping(loader: _UniqueKeys, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is given twice (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: Path) -> object:
    """The content of the YAML file ``path``.

    Raises:
        CatalogError: It is not valid YAML, or a mapping in it gives a key twice: one line with
            the line and column.
    """
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeys)  # noqa: S506 (a SafeLoader subclass)
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise CatalogError(f"{path}:{line}: not UTF-8 text (byte 0x{err.object[err.start]:02x}); save the catalog as "
                           "UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = str(getattr(err, "context", None) or "")
        if "alias" in context + problem or "anchor" in context:  # `images: *.tif`: YAML reads `*` as an alias
            problem += "; a value starting with * or & (a glob) must be quoted: images: '*/*.tif'"
        raise CatalogError(f"{path}{where}: not valid YAML: {problem}") from None
