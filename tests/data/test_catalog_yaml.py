"""A catalog's YAML: a key given twice and a syntax error are one line naming the file, line and column."""

from __future__ import annotations

import pytest

from segpipe.data.catalog import load_catalog
from segpipe.data.catalog_yaml import read_yaml
from segpipe.errors import CatalogError

ENTRY = "    images: img/*.tif\n    ndim: 2\n    classes: [background, cell]\n"


def test_a_dataset_given_twice_is_refused(tmp_path):
    """A copied entry left under the same name replaced the first without a word."""
    path = tmp_path / "catalog.yaml"
    path.write_text("datasets:\n  cells:\n" + ENTRY + "  cells:\n" + ENTRY)
    with pytest.raises(CatalogError, match=r"^.*catalog.yaml:6:3: not valid YAML: 'cells' is given twice \(first on line 2\)$"):
        load_catalog(path)


def test_a_key_given_twice_in_an_entry_is_refused(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text("datasets:\n  cells:\n" + ENTRY + "    split: {train: [a]}\n    split: {train: [b]}\n")
    with pytest.raises(CatalogError, match=r"catalog.yaml:7:5: not valid YAML: 'split' is given twice \(first on line 6\)$"):
        read_yaml(path)


def test_a_syntax_error_is_one_line_with_its_place(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text("datasets:\n  cells:\n    images: img/*.tif\n    labels: [lab/*.tif\n    ndim: 2\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}:5:") and "not valid YAML: expected ',' or ']'" in message


@pytest.mark.parametrize("value, found", [("*/*.tif", "expected alphabetic or numeric character, but found '/'"),
                                          ("*tif", "found undefined alias 'tif'")])
def test_an_unquoted_glob_starting_with_a_star_says_to_quote_it(tmp_path, value, found):
    path = tmp_path / "catalog.yaml"
    path.write_text(f"datasets:\n  cells:\n    images: {value}\n")
    with pytest.raises(CatalogError) as info:
        read_yaml(path)
    assert str(info.value).endswith(f"not valid YAML: {found}; a value starting with * or & (a glob) must be quoted: "
                                    "images: '*/*.tif'")


def test_plain_yaml_reads_as_safe_load_reads_it(tmp_path):
    import yaml

    path = tmp_path / "catalog.yaml"
    text = "datasets:\n  a: {images: x, n: [1, 2.5, null, true], s: {deep: {k: v}}}\n  b: &anchor {k: 1}\n  c: *anchor\n"
    path.write_text(text)
    assert read_yaml(path) == yaml.safe_load(text)
    path.write_text("x: !!python/object:os.system {}\n")
    with pytest.raises(CatalogError, match="not valid YAML"):  # still the safe loader
        read_yaml(path)


def test_a_catalog_that_is_not_utf8_is_one_line_with_its_line(tmp_path):
    """A catalog saved as Latin-1 (an accented name on line 3) gave a UnicodeDecodeError traceback."""
    path = tmp_path / "catalog.yaml"
    path.write_bytes("datasets:\n  cells:\n    description: Zellkerne, gefärbt\n".encode("latin-1"))
    with pytest.raises(CatalogError, match=r"catalog.yaml:3: not UTF-8 text \(byte 0xe4\); save the catalog as UTF-8$"):
        load_catalog(path)
