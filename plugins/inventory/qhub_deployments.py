# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: qhub_deployments
short_description: One host per QHub deployment, found from qhub-config.yml paths or globs
version_added: 0.2.0
author: qhub.prefect contributors (@qhub-prefect)
description:
  - Reads an inventory file whose name ends in C(.qhub_deployments.yml) or C(.qhub_deployments.yaml) and makes one
    host per QHub config it finds, for C(playbooks/deploy.yml) to converge them all in one run with C(forks).
  - Each config is parsed and validated with the collection's config model (the rules of
    M(qhub.prefect.qhub_config_info)); secret references need not resolve here, since an inventory sync (an AWX
    inventory source) does not get the deployment's credentials.
  - The host is named after the entry's C(deployments[].name), else the config's C(project_name), else the name
    of the directory holding the config.
  - "Host variables: C(qhub_config_file) (absolute path), C(qhub_project_name), C(qhub_namespace),
    C(qhub_generation) (C(prefect1) or C(prefect3), read from C(prefect.image)), C(qhub_image),
    C(qhub_prefect_enabled), and where given C(qhub_prefect_kubeconfig), C(qhub_prefect_kube_context),
    C(qhub_prefect_api_url) and C(qhub_prefect_token_env) (the name of the environment variable holding this
    deployment's Prefect API key, never the key); C(ansible_connection=local), since every task of a deployment
    runs on the controller."
  - Every host is in the group named after its generation (C(prefect1) or C(prefect3)).
  - A pattern that matches no file, a config that cannot be read or is invalid, and two configs that would be the
    same host are reported with the file and the key path. Without O(strict) the other deployments still load,
    and an invalid config whose host name is known stays in the inventory, in the group C(qhub_invalid), with
    C(qhub_inventory_error) saying why, so that C(deploy.yml) fails it by name and writes nothing for it. With
    O(strict) the inventory fails.
  - A named entry (one with C(name)) whose C(config) matches no file is such an invalid host too, so that
    C(deploy.yml) fails it by name and exits non-zero; an entry without C(name) that matches no file (a glob over
    a directory that may be empty) is only a warning.
  - Paths are relative to the directory of the inventory file.
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin; the inventory file is read only when it names it.
    type: str
    required: true
    choices: [qhub.prefect.qhub_deployments]
  deployments:
    description:
      - The QHub deployments. Each item is a path or glob of C(qhub-config.yml) files (C(**) matches any number of
        directories), or a mapping with C(config) (the path or glob) and settings for the deployments it matches.
      - "Keys of a mapping: C(config) (required), C(name) (the host name; only for a C(config) matching one file),
        C(kubeconfig), C(context), C(prefect_api_url), C(prefect_token_env) (each overrides the option of the same
        name for these deployments), and C(vars) (more host variables, for example
        C(qhub_prefect_work_pool))."
      - A Prefect API key is never written here in plain text; name the environment variable that holds it with
        C(prefect_token_env), or keep it vault-encrypted as C(qhub_prefect_api_key) in C(host_vars/).
    type: list
    elements: raw
    required: true
  kubeconfig:
    description:
      - The kubeconfig of every deployment without its own C(kubeconfig); becomes the host variable
        C(qhub_prefect_kubeconfig). Relative to the inventory file.
      - Empty leaves it to E(KUBECONFIG) at run time (for example from an AWX credential).
    type: str
    default: ''
  context:
    description:
      - The kubeconfig context of every deployment without its own C(context); becomes C(qhub_prefect_kube_context).
      - Empty uses the kubeconfig's current context. C(compose) can derive it per host, for example from
        C(qhub_project_name).
    type: str
    default: ''
  prefect_api_url:
    description:
      - The Prefect API URL of every deployment without its own C(prefect_api_url); becomes C(qhub_prefect_api_url).
      - Empty leaves it to E(PREFECT_API_URL) at run time.
    type: str
    default: ''
  prefect_token_env:
    description:
      - The name of the environment variable holding the Prefect API key of every deployment without its own
        C(prefect_token_env); becomes C(qhub_prefect_token_env). C(deploy.yml) fails a deployment whose variable is
        not set, before writing anything for it.
      - Empty leaves it to E(QHUB_SECRET_PREFECT_TOKEN) (or a vault-encrypted C(qhub_prefect_api_key) host variable).
    type: str
    default: ''
'''

EXAMPLES = r'''
# fleet.qhub_deployments.yml: one host per repository holding a qhub-config.yml
plugin: qhub.prefect.qhub_deployments
deployments:
  - config: deployments/*/qhub-config.yml
    kubeconfig: ~/.kube/config
  - config: prod/qhub-config.yml
    name: prod
    kubeconfig: ~/.kube/prod.yaml
    context: prod-admin
    prefect_api_url: https://api.prefect.cloud/api/accounts/ACCOUNT/workspaces/WORKSPACE
    prefect_token_env: PROD_PREFECT_TOKEN
    vars:
      qhub_prefect_work_pool: prod
# Each deployment's context is named after its project, and its key is in PREFECT_TOKEN_<PROJECT>.
compose:
  qhub_prefect_kube_context: qhub_prefect_kube_context | default('ctx-' ~ qhub_project_name)
  qhub_prefect_token_env: qhub_prefect_token_env | default('PREFECT_TOKEN_' ~ (qhub_project_name | upper))
keyed_groups:
  - key: qhub_namespace
    prefix: namespace
groups:
  production: qhub_project_name is match('prod')
strict: false
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/qhub-deployments
'''

import glob
import os

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

# Python's bytecode cache for the collection's code below (plugin_utils/_bytecode_cache.py).
from ansible_collections.qhub.prefect.plugins.plugin_utils._bytecode_cache import bytecode_imports

with bytecode_imports():
    from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import AnyVariable, parse_qhub_config
    from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config_file import read_qhub_config_file
    from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError

ENTRY_KEYS = ("config", "name", "kubeconfig", "context", "prefect_api_url", "prefect_token_env", "vars")
SETTING_VARS = (("kubeconfig", "qhub_prefect_kubeconfig"), ("context", "qhub_prefect_kube_context"),
                ("prefect_api_url", "qhub_prefect_api_url"), ("prefect_token_env", "qhub_prefect_token_env"))
INVALID_GROUP = "qhub_invalid"
# A key in plain text in the inventory would be readable by anyone who can read the inventory (or an AWX
# inventory source's output); these names may only hold vault-encrypted values.
SECRET_VARS = ("qhub_prefect_api_key",)


def _is_vault_encrypted(value):
    try:  # ansible-core 2.19 and later; there the older class is a deprecated stand-in
        from ansible.parsing.vault import EncryptedString as vaulted
    except ImportError:
        from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode as vaulted
    return isinstance(value, vaulted)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "qhub.prefect.qhub_deployments"

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(
            (".qhub_deployments.yml", ".qhub_deployments.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        base = os.path.dirname(os.path.abspath(path))
        entries = self._entries(self.get_option("deployments"))
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        records = None
        if use_cache:
            try:
                records = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if records is None:
            records = self._discover(entries, base)
            if self.get_option("cache"):
                update_cache = True
        if update_cache:
            self._cache[cache_key] = records
        self._populate(records, entries, base)

    # -- reading the inventory file

    def _fail(self, message):
        raise AnsibleParserError("qhub_deployments: %s" % message)

    def _entries(self, deployments):
        if not isinstance(deployments, list) or not deployments:
            self._fail("deployments: want a non-empty list of config paths or mappings with a config key")
        entries = []
        for index, item in enumerate(deployments):
            where = "deployments[%d]" % index
            if isinstance(item, str):
                item = {"config": item}
            if not isinstance(item, dict):
                self._fail("%s: want a path or a mapping, not %s" % (where, type(item).__name__))
            unknown = sorted(set(item) - set(ENTRY_KEYS))
            if unknown:
                self._fail("%s.%s: unknown key; accepted keys: %s" % (where, unknown[0], ", ".join(ENTRY_KEYS)))
            if not isinstance(item.get("config"), str) or not item["config"].strip():
                self._fail("%s.config: want the path or glob of a QHub config" % where)
            for key in ENTRY_KEYS[1:6]:
                if item.get(key) is not None and not isinstance(item[key], str):
                    self._fail("%s.%s: want a string, not %s" % (where, key, type(item[key]).__name__))
            extra = item.get("vars") or {}
            if not isinstance(extra, dict):
                self._fail("%s.vars: want a mapping of host variables" % where)
            for name in SECRET_VARS:
                if name in extra and not _is_vault_encrypted(extra[name]):
                    self._fail("%s.vars.%s: a Prefect API key in plain text; encrypt it (ansible-vault encrypt_string)"
                               " or name its environment variable with prefect_token_env" % (where, name))
            entries.append(dict(item, where=where, vars=extra))
        return entries

    # -- finding and validating the configs (what the cache holds: no secret, no vault value)

    def _discover(self, entries, base):
        records = []
        for entry in entries:
            pattern = os.path.join(base, os.path.expanduser(entry["config"]))
            matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else (
                [pattern] if os.path.lexists(pattern) else [])
            matches = [match for match in matches if not os.path.isdir(match)]
            if not matches:
                records.append({"where": entry["where"], "file": pattern, "name": entry.get("name"),
                                "error": "%s matches no file" % entry["config"], "missing": True})
                continue
            if entry.get("name") and len(matches) > 1:
                self._fail("%s.name: %r is one host, but %s matches %d files" % (
                    entry["where"], entry["name"], entry["config"], len(matches)))
            for match in matches:
                records.append(self._read(entry, os.path.abspath(match)))
        return records

    def _read(self, entry, path):
        record = {"where": entry["where"], "file": path, "name": entry.get("name")}
        fallback = os.path.basename(os.path.dirname(path))
        try:
            dummy, doc = read_qhub_config_file(path)
        except (IOError, OSError, UnicodeDecodeError) as exc:
            record.update(name=record["name"] or fallback, error="%s: cannot read it: %s" % (path, to_native(exc)))
            return record
        except ConfigError as exc:
            record.update(name=record["name"] or fallback, error=to_text(exc))
            return record
        project = doc.get("project_name") if isinstance(doc, dict) else None
        record["project_name"] = project if isinstance(project, str) and project else None
        record["name"] = record["name"] or record["project_name"] or fallback
        try:
            # Secret references and credentials are checked at run time, where the deployment's environment is.
            config = parse_qhub_config(doc, AnyVariable({}), require_token=False, credentials=False)
        except ConfigError as exc:
            record["error"] = "%s: %s" % (path, exc)
            record["key"] = exc.path
            return record
        record.update(namespace=config.namespace, generation=config.generation, image=config.image,
                      enabled=config.enabled)
        return record

    # -- hosts, variables, groups

    def _populate(self, records, entries, base):
        strict = self.get_option("strict")
        by_where = dict((entry["where"], entry) for entry in entries)
        names = {}
        for record in records:
            if record.get("missing") and not record.get("name"):
                self._problem(strict, "%s: %s" % (record["where"], record["error"]))
                continue
            if record.get("missing"):
                # An entry that names its host promised that deployment: without its config it is failed by
                # name (deploy.yml writes nothing for it and exits non-zero), not dropped with a warning.
                record = dict(record, error="%s.config: %s; the entry names the host %r" % (
                    record["where"], record["error"], record["name"]))
            if record["name"] in names:
                first = names[record["name"]]
                message = "%s and %s are both the host %r: give one of them a name (deployments[].name)" % (
                    first["file"], record["file"], record["name"])
                self._problem(strict, message)
                first["error"] = message
                continue
            names[record["name"]] = record
            if record.get("error"):
                self._problem(strict, "host %s (%s): %s" % (record["name"], record["where"], record["error"]))
        for name, record in names.items():
            self._add(name, record, by_where.get(record["where"], {}), base, strict)

    def _problem(self, strict, message):
        if strict:
            self._fail(message)
        self.display.warning("qhub_deployments: %s" % message)

    def _add(self, name, record, entry, base, strict):
        self.inventory.add_host(name)
        values = {"qhub_config_file": record["file"], "qhub_project_name": record.get("project_name"),
                  "ansible_connection": "local"}
        for option, variable in SETTING_VARS:
            value = entry.get(option) or self.get_option(option)
            if value:
                if option == "kubeconfig":
                    value = os.path.join(base, os.path.expanduser(value))
                values[variable] = value
        if record.get("error"):
            values["qhub_inventory_error"] = record["error"]
            self.inventory.add_group(INVALID_GROUP)
            self.inventory.add_child(INVALID_GROUP, name)
        else:
            values.update(qhub_namespace=record["namespace"], qhub_generation=record["generation"],
                          qhub_image=record["image"], qhub_prefect_enabled=record["enabled"])
            self.inventory.add_group(record["generation"])
            self.inventory.add_child(record["generation"], name)
        values.update(entry.get("vars") or {})
        for key, value in values.items():
            self.inventory.set_variable(name, key, value)
        hostvars = self.inventory.get_host(name).get_vars()
        self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
        hostvars = self.inventory.get_host(name).get_vars()
        self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)
