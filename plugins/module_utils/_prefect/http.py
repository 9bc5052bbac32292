# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small JSON HTTP client for the Prefect APIs, over Ansible's ``open_url``.

Private to the collection. Bounded retries with exponential backoff on connection errors, timeouts,
429 (honouring ``Retry-After`` up to a cap) and 502/503/504; other 4xx answers are not retried.
Every failure is a ``PrefectApiError`` whose message names the URL and never the API key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import email.utils
import json
import socket
import ssl
import time
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ansible.module_utils.urls import ConnectionError as AnsibleConnectionError
from ansible.module_utils.urls import Request, SSLValidationError, make_context

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import QhubPrefectError, short

RETRY_STATUSES = (429, 502, 503, 504)
REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 422: "Unprocessable Entity", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
# What a web framework answers for a path it has no route for (FastAPI/Starlette), as opposed to
# Prefect's own "Work pool "x" not found." for an object that does not exist.
GENERIC_NOT_FOUND = ("Not Found", "Method Not Allowed")
MAX_ERROR_TEXT = 300

PREFECT3_API = ("a Prefect 2/3 REST API", ("http://HOST:4200/api, or "
                "https://api.prefect.cloud/api/accounts/ACCOUNT_ID/workspaces/WORKSPACE_ID for Prefect Cloud"))
PREFECT1_API = ("a Prefect 1 GraphQL API", "http://HOST:4200/graphql for Prefect Server 1")


class PrefectApiError(QhubPrefectError):
    """A request to the Prefect API failed; ``str()`` is a message for the user, without the key."""

    # The HTTP status helps tell a refused key from a missing object; the body may echo what was sent.
    PUBLIC_DETAILS = ("status",)

    def __init__(self, message, status=None, body=None):
        super().__init__(message)
        self.status = status
        self.body = body


def quote_segment(value):
    """One path segment: a name with any character in it."""
    return quote(str(value), safe="")


def public_url(url):
    """``url`` without user:password@ (the only place a URL could hold a credential)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[1], parts.path, parts.query, parts.fragment))


def _retry_after_seconds(value, now=None):
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def error_detail(body):
    """The human part of an error body from Prefect (FastAPI ``detail`` or a validation error list)."""
    if isinstance(body, dict):
        if isinstance(body.get("exception_detail"), list):
            items = []
            for item in body["exception_detail"]:
                if isinstance(item, dict):
                    where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
                    items.append("%s: %s" % (where, item.get("msg")) if where else str(item.get("msg")))
            if items:
                return short("; ".join(items), MAX_ERROR_TEXT, one_line=True)
        detail = body.get("detail", body.get("message", body.get("exception_message")))
        if detail is not None:
            return short(detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True), MAX_ERROR_TEXT,
                         one_line=True)
    if body in (None, ""):
        return ""
    return short(body if isinstance(body, str) else json.dumps(body, sort_keys=True), MAX_ERROR_TEXT, one_line=True)


_TLS_CONTEXTS = {}


def open_url_sharing_tls(url, method=None, data=None, validate_certs=True, **kwargs):
    """Ansible's ``open_url`` with one TLS context per process and certificate setting.

    ``open_url`` builds a new context for every request, even over plain http:// where none is used, and loading
    the system's CA store costs about 30 ms each time: a third of a no-op task. Redirects are not followed, so
    an http:// request never needs one.
    """
    if urlsplit(url).scheme == "https":
        if validate_certs not in _TLS_CONTEXTS:
            _TLS_CONTEXTS[validate_certs] = make_context(validate_certs=validate_certs)
        context = _TLS_CONTEXTS[validate_certs]
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return Request().open(method or ("POST" if data else "GET"), url, data=data, validate_certs=validate_certs,
                          context=context, **kwargs)


class PrefectHttpClient:
    """JSON over HTTP(S) to ``base_url``; ``requests`` counts the requests sent, retries included."""

    def __init__(self, base_url, api_key=None, auth_string=None, timeout=30, retries=3, validate_certs=True,
                 api=PREFECT3_API, backoff=0.5, max_backoff=8.0, max_retry_after=30.0, sleep=None, opener=None,
                 headers=None):
        if not isinstance(base_url, str) or not base_url.strip():
            raise PrefectApiError("api_url is not set: give the Prefect API URL (%s)" % api[1])
        base_url = base_url.strip()
        if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
            raise PrefectApiError("api_url %r is not an http:// or https:// URL (want %s)"
                                  % (public_url(base_url), api[1]))
        if retries is None or retries < 0:
            raise PrefectApiError("retries must be 0 or more, not %r" % (retries,))
        if timeout is None or timeout <= 0:
            raise PrefectApiError("timeout must be more than 0 seconds, not %r" % (timeout,))
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = int(retries)
        self.validate_certs = validate_certs
        self.api_name, self.api_example = api
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.requests = 0
        self._sleep = sleep or time.sleep
        self._open = opener or open_url_sharing_tls
        self._has_credentials = bool(api_key or auth_string)
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        self.headers.update(headers or {})
        self._secrets = [value for value in (api_key, auth_string) if value]
        # user:password in the URL is a credential too (basic auth): no message may quote it, whatever it echoes.
        netloc = urlsplit(base_url).netloc
        if "@" in netloc:
            userinfo = netloc.rsplit("@", 1)[0]
            self._secrets += [value for value in (userinfo, unquote(userinfo)) if value]
        if api_key:
            self.headers["Authorization"] = "Bearer %s" % api_key
        elif auth_string:
            token = base64.b64encode(auth_string.encode("utf-8")).decode("ascii")
            self._secrets.append(token)
            self.headers["Authorization"] = "Basic %s" % token

    # -- helpers --------------------------------------------------------------------------------
    def url_for(self, path):
        return self.base_url + path if path else self.base_url

    def redact(self, text):
        text = str(text)
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text

    def error(self, message, status=None, body=None):
        return PrefectApiError(self.redact(message), status=status, body=body)

    def not_this_api(self, url, what):
        return self.error("%s answered %s: it is not %s. Check api_url (want %s)." % (
            public_url(url), what, self.api_name, self.api_example))

    def _delay(self, attempt, retry_after=None):
        if retry_after is not None:
            return min(self.max_retry_after, retry_after)
        return min(self.max_backoff, self.backoff * (2 ** attempt))

    # -- the request --------------------------------------------------------------------------
    def request(self, method, path="", body=None, allow=(), timeout=None):
        """(status, parsed JSON or None) for a 2xx answer or a status in ``allow``; raises otherwise.

        A 404 is returned only when ``allow`` has it and the server said which object it did not find:
        a bare "Not Found" means the path does not exist, so the URL is not the expected API.
        """
        url = self.url_for(path)
        data = None if body is None else json.dumps(body).encode("utf-8")
        last_problem = None
        attempt = 0
        while True:
            self.requests += 1
            retry_after = None
            try:
                response = self._open(url, data=data, headers=dict(self.headers), method=method,
                                      timeout=timeout or self.timeout, validate_certs=self.validate_certs,
                                      follow_redirects="none", use_netrc=False, use_proxy=True)
                status = response.getcode()
                raw = response.read()
                return status, self._parse(url, status, raw, response.headers)
            except HTTPError as exc:
                status = exc.code
                raw = _read_quietly(exc)
                if status in RETRY_STATUSES:
                    last_problem = "answered HTTP %d %s" % (status, REASONS.get(status, ""))
                    if status == 429:
                        retry_after = _retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
                else:
                    parsed = self._parse_error(raw)
                    if status in allow and not self._route_missing(status, parsed):
                        return status, parsed
                    raise self._status_error(method, url, status, parsed, exc)
            except SSLValidationError as exc:
                raise self.error("could not verify the TLS certificate of %s: %s (set validate_certs=false only "
                                 "for a test server)" % (public_url(url), short(exc, MAX_ERROR_TEXT, one_line=True)))
            except TimeoutError:
                last_problem = "did not answer within %s s" % (timeout or self.timeout)
            except URLError as exc:
                reason = getattr(exc, "reason", exc)
                if "CERTIFICATE_VERIFY_FAILED" in str(reason):
                    raise self.error("could not verify the TLS certificate of %s: %s (set validate_certs=false "
                                     "only for a test server)" % (
                                         public_url(url), short(reason, MAX_ERROR_TEXT, one_line=True)))
                if isinstance(reason, (socket.timeout, TimeoutError)):
                    last_problem = "did not answer within %s s" % (timeout or self.timeout)
                else:
                    last_problem = "could not be reached (%s)" % short(reason, MAX_ERROR_TEXT, one_line=True)
            except (AnsibleConnectionError, HTTPException, OSError) as exc:
                last_problem = "could not be reached (%s)" % short(
                    str(exc) or type(exc).__name__, MAX_ERROR_TEXT, one_line=True)
            except ValueError as exc:
                raise self.error("cannot send a request to %s: %s" % (
                    public_url(url), short(exc, MAX_ERROR_TEXT, one_line=True)))
            if attempt >= self.retries:
                raise self.error("the Prefect API at %s %s; gave up after %d %s" % (
                    public_url(url), last_problem, attempt + 1, "attempt" if attempt == 0 else "attempts"))
            self._sleep(self._delay(attempt, retry_after))
            attempt += 1

    def _parse(self, url, status, raw, headers):
        if status == 204 or not raw or not raw.strip():
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            kind = (headers.get("Content-Type") if headers else None) or "no content type"
            raise self.not_this_api(url, "HTTP %d with a body that is not JSON (%s)" % (status, kind.split(";")[0]))

    @staticmethod
    def _parse_error(raw):
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return raw.decode("utf-8", "replace")

    @staticmethod
    def _route_missing(status, parsed):
        if status not in (404, 405):
            return False
        return not isinstance(parsed, dict) or parsed.get("detail") in GENERIC_NOT_FOUND

    def _status_error(self, method, url, status, parsed, exc):
        detail = error_detail(parsed)
        where = public_url(url)
        if status == 401:
            if not self._has_credentials:
                return self.error("the Prefect API at %s requires an API key (HTTP 401): set api_key or the "
                                  "environment variable PREFECT_API_KEY" % where, status, parsed)
            return self.error("the Prefect API refused the API key (HTTP 401) at %s" % where, status, parsed)
        if status == 403:
            return self.error("the Prefect API refused the API key (HTTP 403) at %s%s" % (
                where, ": " + detail if detail else ""), status, parsed)
        if self._route_missing(status, parsed):
            return self.not_this_api(url, "HTTP %d %s to %s" % (status, REASONS.get(status, ""), method))
        if 300 <= status < 400:
            location = exc.headers.get("Location") if exc.headers else None
            return self.error("the Prefect API at %s redirected (HTTP %d) to %s; set api_url to the address it "
                              "redirects to" % (where, status, public_url(location or exc.geturl() or "?")),
                              status, parsed)
        return self.error("the Prefect API rejected %s %s (HTTP %d %s)%s" % (
            method, where, status, REASONS.get(status, ""), ": " + detail if detail else ""), status, parsed)


def _read_quietly(exc):
    try:
        return exc.read()
    except (OSError, HTTPException, AttributeError):
        return b""
