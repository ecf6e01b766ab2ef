"""Text conventions of the rl-gym server, reproduced so reasons match it exactly.

The server is written in Rust. A check's ``reason`` quotes JSON values the way
``serde_json`` prints them and lists of strings the way Rust's ``{:?}`` prints
them, and the check language trims and lower-cases text the Rust way. The
helpers below reproduce those conventions with the standard library, so that
this package gives the same reasons as the server, character for character.
"""

import json
import unicodedata

# Unicode White_Space: what Rust's ``str::trim`` strips. Python's ``str.strip()``
# also strips a few control characters (U+001C..U+001F) that Rust keeps.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def trim(text):
    """``str::trim``: the text without leading and trailing Unicode whitespace."""
    return text.strip(_WHITESPACE)


def lower(text):
    """``str::to_lowercase`` (full Unicode lower-casing, final sigma included)."""
    return text.lower()


def is_number(value):
    """A JSON number. ``bool`` is an ``int`` in Python but never a number in JSON."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def json_text(value):
    """A JSON value as ``serde_json`` prints it: compact, object keys sorted,
    non-ASCII characters kept, floats in Rust's shortest form (``1.0``, ``1e+21``,
    ``1e-7``, ``0.00001``)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(json_text(item) for item in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return (
            "{"
            + ",".join(
                json.dumps(key, ensure_ascii=False) + ":" + json_text(item)
                for key, item in items
            )
            + "}"
        )
    raise TypeError("not a JSON value: {!r}".format(value))


def float_text(value):
    """A finite float as ``serde_json`` prints it: the shortest digits that read
    back as the same float, in plain notation when the first digit's exponent is
    between -5 and 15 and in scientific notation otherwise.

    Python's ``repr`` finds the same shortest digits; only the layout differs
    (``repr`` gives ``1e-05`` where the server gives ``0.00001``, and ``1e-07``
    for its ``1e-7``), so the digits are taken from ``repr`` and laid out the
    server's way.
    """
    if value != value or value in (float("inf"), float("-inf")):
        return "null"  # not representable in JSON; serde_json writes null
    if value == 0.0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    sign = "-" if value < 0 else ""
    digits, exponent = _shortest_digits(abs(value))
    length = len(digits)
    # The value is int(digits) * 10**exponent, and 10**(kk-1) <= value < 10**kk.
    kk = length + exponent
    if 0 <= exponent and kk <= 16:
        body = digits + "0" * exponent + ".0"
    elif 0 < kk <= 16:
        body = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        body = "0." + "0" * (-kk) + digits
    else:
        mantissa = digits if length == 1 else digits[0] + "." + digits[1:]
        body = mantissa + "e" + ("+" if kk > 0 else "-") + str(abs(kk - 1))
    return sign + body


def _shortest_digits(value):
    """(digits, exponent) with value == int(digits) * 10**exponent, no zeros
    at either end of ``digits``."""
    text = repr(value)
    mantissa, _, exp = text.partition("e")
    exponent = int(exp) if exp else 0
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    exponent -= len(fraction)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return stripped, exponent


def debug_list(items):
    """A list of strings as Rust's ``{:?}`` prints it: ``["a", "b \\"c\\""]``."""
    return "[" + ", ".join(debug_str(item) for item in items) + "]"


def debug_str(text):
    """A string as Rust's ``{:?}`` prints it, quotes included."""
    return '"' + "".join(_debug_char(c) for c in text) + '"'


_SIMPLE_ESCAPES = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"'}

# Rust escapes a character it does not consider printable (these general
# categories, the space excepted) and combining marks (Grapheme_Extend, which
# is approximated here by the Mn and Me categories).
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs", "Mn", "Me"}


def _debug_char(c):
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c]
    if c != " " and unicodedata.category(c) in _UNPRINTABLE:
        return "\\u{%x}" % ord(c)
    return c
