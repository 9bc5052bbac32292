# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""This collection's module_utils and plugin_utils, imported by a plugin with Python's bytecode cache.

ansible-core's collection loader compiles a collection's Python from source on every import and neither reads nor
writes ``__pycache__``: for the module_utils our action plugins run in the controller, that is 40-70 ms of every
``ansible-playbook`` run, more than a no-op converge spends on the network. A plugin imports them inside
``bytecode_imports()``: for that import alone a finder stands just ahead of the collection loader, for those
modules alone. Each is found where the collection loader would find it (the parent package's path, which the
collection loader resolved) and loaded by Python's own source loader, which uses ``__pycache__`` (written when it
can be, as for any Python package; an installed collection is compiled ahead with ``python -m compileall``, as
``scripts/setup.sh`` and the execution environment's build do).

Scoped, not installed at import: the finder is gone from ``sys.meta_path`` when the plugin's import ends, so
nothing else's imports change (ansible-test's import sanity test requires that), and it stands after any finder
ahead of the collection loader (ansible-test's restricted loader still sees every import). Modules run by
AnsiballZ on a target are not imported this way and are unchanged; a module imported later, outside the scope,
is the collection loader's as before.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import importlib.machinery
import sys

# Below these packages; the packages themselves stay the collection loader's.
_PACKAGES = ("ansible_collections.qhub.prefect.plugins.module_utils.",
             "ansible_collections.qhub.prefect.plugins.plugin_utils.")
_PYTHON_SOURCE = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)


class ModuleUtilsBytecodeFinder:
    """A meta path finder for this collection's module_utils and plugin_utils, with Python's source loader."""

    # One FileFinder per directory, as sys.path_importer_cache keeps them: each lists its directory once.
    _finders = {}

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if path is None or not fullname.startswith(_PACKAGES):
            return None
        for entry in path:
            finder = cls._finders.get(entry)
            if finder is None:
                # FileFinder directly: a finder from sys.path_hooks would be the collection loader's own again.
                finder = cls._finders[entry] = importlib.machinery.FileFinder(entry, _PYTHON_SOURCE)
            spec = finder.find_spec(fullname, target)
            if spec is not None:
                return spec
        return None

    @classmethod
    def invalidate_caches(cls):
        cls._finders.clear()


def _collection_loader_position():
    for position, finder in enumerate(sys.meta_path):
        if type(finder).__name__ == "_AnsibleCollectionFinder":
            return position
    return None


@contextlib.contextmanager
def bytecode_imports():
    """The imports in this block load this collection's module_utils and plugin_utils with the bytecode cache."""
    position = _collection_loader_position()
    # Without the collection loader (a plain Python import) or inside another such block: nothing to change.
    if position is None or ModuleUtilsBytecodeFinder in sys.meta_path:
        yield
        return
    sys.meta_path.insert(position, ModuleUtilsBytecodeFinder)
    try:
        yield
    finally:
        sys.meta_path.remove(ModuleUtilsBytecodeFinder)
