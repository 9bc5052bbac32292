# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one credential rule: where the Prefect API URL, token and auth string come from.

qhub_config_info, the role and every module resolve them here, so they cannot disagree
(tests/unit/collection/test_credential_rule.py walks the combinations through each of them). Pure: the
environment is a mapping given by the caller.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from urllib.parse import unquote, urlparse, urlsplit

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import public_url
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import PREFECT1
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import (
    SECRET_PREFIX, is_secret_ref, resolve_secret_ref,
)

# In this order; the config's prefect.token comes last.
TOKEN_ENV_VARS = ("QHUB_SECRET_PREFECT_TOKEN", "TF_VAR_prefect_token", "PREFECT_API_KEY")
CONFIG_TOKEN_PATH = "prefect.token"
AUTH_STRING_ENV = "PREFECT_API_AUTH_STRING"
# Prefect 1 read PREFECT__CLOUD__API; Prefect 2/3 clients PREFECT_API_URL. For a Prefect 1 agent and its
# project both mean the same, the older name first; Prefect 2/3 only ever read PREFECT_API_URL.
API_URL_ENV_VARS = {PREFECT1: ("PREFECT__CLOUD__API", "PREFECT_API_URL"), "prefect3": ("PREFECT_API_URL",)}
PREFECT_CLOUD1_API = "https://api.prefect.io"
CLOUD_HOSTS = ("api.prefect.io", "api.prefect.cloud")


def is_prefect_cloud(url):
    """Prefect Cloud 1 (api.prefect.io) or Cloud 2/3 (api.prefect.cloud): those refuse requests without a key."""
    try:
        host = (urlparse(url or "").hostname or "").lower()
    except ValueError:
        return False
    return host in CLOUD_HOSTS or host.endswith(".prefect.cloud")


def url_userinfo(url):
    """The ``user:password`` of a URL (a credential: a Prefect server behind basic auth), or None."""
    try:
        netloc = urlsplit(url).netloc if isinstance(url, str) else ""
    except ValueError:
        return None
    return netloc.rsplit("@", 1)[0] if "@" in netloc else None


def _blank(value):
    return value is None or (isinstance(value, str) and not value.strip())


def resolve_api_url(generation, environ, explicit=None, explicit_path="api_url"):
    """(url, source): an explicit value, else the environment, else Prefect Cloud 1 for Prefect 1."""
    if explicit is not None:
        if _blank(explicit):
            raise ConfigError(explicit_path, "is set but empty: give the Prefect API URL or leave it unset")
        return explicit.strip(), explicit_path
    for name in API_URL_ENV_VARS[PREFECT1 if generation == PREFECT1 else "prefect3"]:
        if name in environ:
            if _blank(environ[name]):
                raise ConfigError(name, "is set but empty: give the Prefect API URL or unset it")
            return environ[name].strip(), name
    if generation == PREFECT1:
        return PREFECT_CLOUD1_API, "the Prefect 1 default (Prefect Cloud 1)"
    return None, None


def resolve_token(environ, explicit=None, explicit_path="api_key", config_token=None,
                  config_path=CONFIG_TOKEN_PATH):
    """(token, source). A task's explicit value first, then TOKEN_ENV_VARS in order, then the config's.

    A source that is set but empty is an error naming it, never skipped: a CI secret that expanded
    to nothing would otherwise fall through to a stale value somewhere else.
    """
    if explicit is not None:
        return _token_value(explicit, explicit_path, environ), explicit_path
    for name in TOKEN_ENV_VARS:
        if name in environ:
            if _blank(environ[name]):
                raise ConfigError(name, "is set but empty: give the Prefect API key or unset it")
            return environ[name], name
    if config_token is None:
        return None, None
    return _token_value(config_token, config_path, environ), config_path


def _token_value(value, path, environ):
    if not isinstance(value, str):
        kind = "a number" if isinstance(value, (int, float)) else "a %s" % type(value).__name__
        raise ConfigError(path, "%s is not a token" % kind)
    if _blank(value):
        raise ConfigError(path, "is set but empty: give the Prefect API key or leave it unset")
    token = resolve_secret_ref(value.strip(), path, environ)
    if _blank(token):
        raise ConfigError(path, "refers to the environment variable %s (via %s), which is set but empty"
                          % (value.strip()[len(SECRET_PREFIX):], value.strip()))
    return token


def resolve_auth_string(environ, explicit=None, explicit_path="api_auth_string"):
    """(auth string, source) for a self-hosted Prefect 2/3 server behind basic auth."""
    if explicit is not None:
        if _blank(explicit):
            raise ConfigError(explicit_path, "is set but empty: give user:password or leave it unset")
        return resolve_secret_ref(explicit, explicit_path, environ), explicit_path
    if AUTH_STRING_ENV in environ:
        if _blank(environ[AUTH_STRING_ENV]):
            raise ConfigError(AUTH_STRING_ENV, "is set but empty: give user:password or unset it")
        return environ[AUTH_STRING_ENV], AUTH_STRING_ENV
    return None, None


class Credentials:
    """What a run talks to the Prefect API with. ``public()`` holds no secret."""

    def __init__(self, api_url, api_url_source, token, token_source, auth_string, auth_string_source):
        self.api_url = api_url
        self.api_url_source = api_url_source
        self.token = token
        self.token_source = token_source
        self.auth_string = auth_string
        self.auth_string_source = auth_string_source

    @property
    def token_required(self):
        return is_prefect_cloud(self.api_url)

    def public(self):
        return {"api_url": public_url(self.api_url) if self.api_url else None,
                "api_url_source": self.api_url_source, "token_source": self.token_source,
                "token_required": self.token_required, "auth_string_source": self.auth_string_source,
                "prefect_cloud": is_prefect_cloud(self.api_url)}


def resolve(generation, environ, api_url=None, api_key=None, api_auth_string=None, config_token=None,
            require=True, api_url_path="api_url", api_key_path="api_key"):
    """The credentials of a run; ConfigError (naming the key or variable at fault) when they cannot work.

    A token is required only by Prefect Cloud (1, 2 or 3); a self-hosted server (Prefect Server 1,
    open-source Prefect 2/3) runs without one, or with basic auth (Prefect 2/3's auth string).
    """
    url, url_source = resolve_api_url(generation, environ, api_url, api_url_path)
    token, token_source = resolve_token(environ, api_key, api_key_path, config_token)
    auth_string, auth_source = (None, None)
    if generation != PREFECT1:
        auth_string, auth_source = resolve_auth_string(environ, api_auth_string)
    credentials = Credentials(url, url_source, token, token_source, auth_string, auth_source)
    if require and token is None and credentials.token_required:
        raise ConfigError(CONFIG_TOKEN_PATH, "the Prefect API %s (from %s) is Prefect Cloud, which needs an API key: "
                          "set %s, or prefect.token in the config" % (
                              public_url(url), url_source, ", ".join(TOKEN_ENV_VARS)))
    return credentials


def _with_reference(value, environ):
    """A value as written and, for a QHUB_SECRET_ reference, what it stands for instead (the name is no secret)."""
    if not isinstance(value, str) or not value.strip():
        return []
    value = value.strip()
    if not is_secret_ref(value):
        return [value]
    return [environ.get(value[len(SECRET_PREFIX):])]


def _url_secrets(url):
    """A URL holding user:password, whole, and its userinfo as written and as sent (percent-decoded).

    Not the password alone: a short common word would garble every returned string holding it (names,
    paths, the image) while the userinfo, with its colon, stands for nothing else.
    """
    userinfo = url_userinfo(url)
    if not userinfo:
        return []
    return [url, url.strip(), userinfo, unquote(userinfo)]


def candidate_secrets(environ, api_url=None, api_key=None, api_auth_string=None, config_token=None):
    """Every value that is a credential of a run, whichever source the rule picks: the no_log values of a module.

    Masking only the winner would print the others: a losing ``prefect.token`` in a config mapping shows
    in the task's arguments at -vvv. QHUB_SECRET_ references count by what they stand for (the name is
    no secret, and masking it would garble the messages that name it).
    """
    found = []
    # The rule takes these as they are set, never as references.
    found += [environ.get(name) for name in TOKEN_ENV_VARS + (AUTH_STRING_ENV,)]
    for value in (api_key, api_auth_string, config_token):
        found += _with_reference(value, environ)
    for url in [api_url] + [environ.get(name) for name in API_URL_ENV_VARS[PREFECT1]]:
        if isinstance(url, str):
            found += _url_secrets(url)
    return set(value for value in found if isinstance(value, str) and value.strip())
