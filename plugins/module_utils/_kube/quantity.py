# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes quantities (500m, 2, 4Gi) as numbers, so that equal values compare equal. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from decimal import Decimal, InvalidOperation

_QUANTITY = re.compile(r"^(?P<num>[+]?(\d+(\.\d*)?|\.\d+))"
                       r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_SUFFIX_FACTOR = {
    None: Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def quantity_value(text):
    """The numeric value of a Kubernetes quantity string, or None if it is not one."""
    match = _QUANTITY.match(text) if isinstance(text, str) else None
    if not match:
        return None
    suffix = match.group("suffix")
    try:
        number = Decimal(match.group("num"))
        if suffix and suffix[0] in "eE":
            return number * (Decimal(10) ** int(suffix[1:]))
        return number * _SUFFIX_FACTOR[suffix]
    except (InvalidOperation, KeyError, OverflowError):
        return None
