"""The action plugins import this collection's module_utils and plugin_utils with Python's bytecode cache
(plugin_utils/_bytecode_cache; that one module is the collection loader's, which imports it first).

ansible-core's collection loader compiles a collection's Python from source on every import; a run of deploy.yml
would pay that for every module_utils module its action plugins import. Checked in a fresh interpreter with the
collection loader installed as ansible-playbook installs it, on a copy of the collection with no bytecode yet.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[3]

IMPORT_AS_ANSIBLE_DOES = """
import importlib, json, sys
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
_AnsibleCollectionFinder(paths=[sys.argv[1]])._install()
importlib.import_module("ansible_collections.qhub.prefect.plugins.action.qhub_deployment")
print(json.dumps(dict(
    (name, [type(module.__spec__.loader).__name__, getattr(module, "__cached__", None), module.__file__])
    for name, module in sys.modules.items() if name.startswith("ansible_collections.qhub.prefect.plugins."))))
"""


def run_python(script, *args):
    """The stdout of ``script`` in a fresh interpreter that may write bytecode, as a user's Python does."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.run([sys.executable, "-c", script] + [str(arg) for arg in args], env=env, check=True,
                          capture_output=True, text=True).stdout


def imported(root):
    return json.loads(run_python(IMPORT_AS_ANSIBLE_DOES, root))


def collection_copy(tmp_path):
    root = tmp_path / "collections"
    target = root / "ansible_collections" / "qhub" / "prefect"
    for directory in ("plugins", "meta"):
        shutil.copytree(REPO / directory, target / directory, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "galaxy.yml", target / "galaxy.yml")
    return root, target


def test_module_and_plugin_utils_are_loaded_by_pythons_source_loader_and_leave_bytecode(tmp_path):
    root, target = collection_copy(tmp_path)
    modules = imported(root)
    below_module_utils = dict((name, seen) for name, seen in modules.items()
                              if name.startswith(("ansible_collections.qhub.prefect.plugins.module_utils.",
                                                  "ansible_collections.qhub.prefect.plugins.plugin_utils."))
                              and not name.endswith("._bytecode_cache"))
    assert "ansible_collections.qhub.prefect.plugins.module_utils._runners.qhub_deployment" in below_module_utils
    assert "ansible_collections.qhub.prefect.plugins.module_utils._kube.client" in below_module_utils
    assert "ansible_collections.qhub.prefect.plugins.plugin_utils._controller_module" in below_module_utils
    for name, (loader, cached, source) in below_module_utils.items():
        assert loader == "SourceFileLoader", name
        # Found where the collection loader finds it: in the collection the loader resolved, not elsewhere.
        assert pathlib.Path(source).is_relative_to(target), name
        assert pathlib.Path(cached).is_file(), name


def test_a_second_run_reads_the_bytecode_and_sees_an_edited_source(tmp_path):
    root, target = collection_copy(tmp_path)
    imported(root)
    names = target / "plugins" / "module_utils" / "_qhub" / "names.py"
    names.write_text(names.read_text() + "\nEDITED_AFTER_THE_FIRST_RUN = True\n")
    script = IMPORT_AS_ANSIBLE_DOES.replace(
        "print(", "import ansible_collections.qhub.prefect.plugins.module_utils._qhub.names as n\n"
                  "assert n.EDITED_AFTER_THE_FIRST_RUN\nprint(")
    run_python(script, root)


AFTER_THE_PLUGIN_IMPORT = """
import importlib, json, sys
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
import ansible.module_utils.six  # adds six's own finder, on any import of ansible's module_utils
_AnsibleCollectionFinder(paths=[sys.argv[1]])._install()
names = lambda: [getattr(finder, "__name__", type(finder).__name__) for finder in sys.meta_path]
before = names()
importlib.import_module("ansible_collections.qhub.prefect.plugins.action.qhub_deployment")
after = names()
later = importlib.import_module(sys.argv[2])
print(json.dumps(dict(before=before, after=after, later_loader=type(later.__spec__.loader).__name__)))
"""


def test_outside_the_plugins_import_the_finder_is_gone_and_imports_are_the_collection_loaders(tmp_path):
    root, target = collection_copy(tmp_path)
    # A module_utils module the plugin does not import: imported later, as another plugin or a module would.
    (target / "plugins" / "module_utils" / "_qhub" / "imported_later.py").write_text("IMPORTED = True\n")
    not_yet_imported = "ansible_collections.qhub.prefect.plugins.module_utils._qhub.imported_later"
    seen = json.loads(run_python(AFTER_THE_PLUGIN_IMPORT, root, not_yet_imported))
    # ansible-test's import sanity test asks the same: sys.meta_path as it was before the plugin was imported.
    assert seen["after"] == seen["before"]
    assert seen["later_loader"] != "SourceFileLoader"


def test_the_package_itself_and_other_plugins_keep_the_collection_loader(tmp_path):
    root = collection_copy(tmp_path)[0]
    modules = imported(root)
    assert modules["ansible_collections.qhub.prefect.plugins.module_utils"][0] != "SourceFileLoader"
    assert modules["ansible_collections.qhub.prefect.plugins.action.qhub_deployment"][0] != "SourceFileLoader"
