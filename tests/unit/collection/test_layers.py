"""module_utils is grouped by layer, and imports point one way (docs/architecture.md).

A Kubernetes or Prefect client that imported the QHub model, or a model that imported a renderer, would
tie layers together that are meant to change apart; this fails on the first such import.
"""

import ast
import pathlib

import pytest

MODULE_UTILS = pathlib.Path(__file__).resolve().parents[3] / "plugins" / "module_utils"
PREFIX = "ansible_collections.qhub.prefect.plugins.module_utils."
# Each layer may import from the layers listed after it, never from one before it.
LAYERS = ["_runners", "_render", "_qhub", "_kube|_prefect", "_common"]
# Within the bottom layer, only this: the QHub model parses Kubernetes quantities, the credential
# rule prints API URLs without their user:password.
ALLOWED_ACROSS = {("_qhub", "_kube.quantity"), ("_qhub", "_prefect.http")}


def rank(package):
    return next(index for index, layer in enumerate(LAYERS) if package in layer.split("|"))


def imports_of(path):
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            found.append(node.module[len(PREFIX):])
        elif isinstance(node, ast.Import):
            found += [alias.name[len(PREFIX):] for alias in node.names if alias.name.startswith(PREFIX)]
    return found


FILES = sorted(path for path in MODULE_UTILS.rglob("*.py") if path.name != "__init__.py")


def test_every_file_is_in_a_layer():
    assert FILES, "no module_utils found"
    loose = [path.name for path in MODULE_UTILS.glob("*.py") if path.name != "__init__.py"]
    assert not loose, "module_utils files outside a layer package: %s" % loose
    for path in FILES:
        rank(path.parent.name)


@pytest.mark.parametrize("path", FILES, ids=[str(path.relative_to(MODULE_UTILS)) for path in FILES])
def test_imports_point_down(path):
    here = path.parent.name
    for imported in imports_of(path):
        package = imported.split(".")[0]
        if package == here:
            continue
        if rank(package) > rank(here) or (here, imported) in ALLOWED_ACROSS:
            continue
        pytest.fail("%s imports %s: %s may only import from %s" % (
            path.relative_to(MODULE_UTILS), imported, here, ", ".join(LAYERS[rank(here) + 1:]) or "nothing"))


def test_kubernetes_and_prefect_clients_know_nothing_of_each_other():
    for path in FILES:
        here = path.parent.name
        if here in ("_kube", "_prefect"):
            other = "_prefect" if here == "_kube" else "_kube"
            assert not [name for name in imports_of(path) if name.startswith(other)], path
