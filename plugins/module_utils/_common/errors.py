# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of every error the collection raises: a message, the key at fault, and the details a result shows."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class QhubPrefectError(Exception):
    """An error a module reports to the user; ``str()`` is the message the task fails with.

    ``path`` is the option or config key at fault (reported as the result's ``key``), or None. The
    details a failed result shows are named by ``PUBLIC_DETAILS`` (attributes of the error), so a
    response body, which may echo a credential, never reaches a result unless a subclass says so; the
    values that do are masked by the module's no_log values as every result is.
    """

    PUBLIC_DETAILS = ()

    def __init__(self, message, path=None, text=None):
        super(QhubPrefectError, self).__init__(message if text is None else text)
        self.message = message
        self.path = path

    def result_keys(self):
        """What a failed task's result gets beside ``msg``: ``key`` when a key is at fault, the public details."""
        out = {} if self.path is None else {"key": self.path}
        for name in self.PUBLIC_DETAILS:
            value = getattr(self, name, None)
            if value is not None:
                out[name] = value
        return out


def short(value, limit=60, one_line=False):
    """``value`` as a message quotes it, cut at ``limit`` characters so one bad value cannot flood the message.

    A config value is quoted as its repr (a string shows its quotes); ``one_line``: a server's or the
    network's text, its whitespace folded to single spaces.
    """
    if one_line:
        text = " ".join(str(value).split())
        return text if len(text) <= limit else text[:limit] + "..."
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"
