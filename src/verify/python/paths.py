"""Paths and filters of the check language: which records of the state a check
looks at, and which of them it counts.

**Paths** are dotted keys from the state root (an object keyed by tool-server
name, e.g. ``{"email": ..., "calendar": ..., "hrms": ...}``), such as
``hrms.leave_requests``. Whenever a key yields a list, its elements become the
current records, so ``hrms.onboarding_checklists[checklist_id=OB-001].items``
is the items of one checklist. A segment may end in
``[field=value,field2=value2]`` to keep only the records whose field's text
equals the value (exactly, case included).

**Filters** (a check's ``where`` or ``with``) map a dotted field to either a
literal (equality; strings compare case-insensitively, numbers by value) or one
operator object: ``{"eq": v}``, ``{"ne": v}``, ``{"contains": v}`` (substring of
a string, or an element of a list), ``{"any_of": [...]}``, ``{"gte": v}``,
``{"lte": v}`` (numbers, or strings such as ISO dates compared as text),
``{"exists": bool}``.
"""

from .text import is_number, json_text, lower, trim

# A field that is not there at all, as opposed to one that holds JSON null.
MISSING = object()


class PathError(ValueError):
    """A malformed path; its message is the failed check's reason."""


def parse_path(path):
    """The segments of a path: a list of ``(key, [(field, value), ...])``."""
    if trim(path) == "":
        raise PathError("empty path")
    # Split on dots outside brackets, so selector values may contain dots (emails).
    parts, depth, current = [], 0, []
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "." and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))

    segments = []
    for part in parts:
        bracket = part.find("[")
        key, rest = (part, None) if bracket < 0 else (part[:bracket], part[bracket:])
        if key == "":
            raise PathError("path `{}` has an empty segment".format(path))
        selectors = []
        if rest is not None:
            inner = rest[1:]
            if not inner.endswith("]"):
                raise PathError(
                    "path `{}`: a selector must look like `[field=value]`".format(path)
                )
            for pair in inner[:-1].split(","):
                if "=" not in pair:
                    raise PathError(
                        "path `{}`: selector `{}` needs `field=value`".format(path, pair)
                    )
                field, _, value = pair.partition("=")
                selectors.append((trim(field), trim(value)))
        segments.append((key, selectors))
    return segments


def resolve(state, path):
    """The records ``path`` denotes in ``state`` (a list; raises PathError)."""
    current = [state]
    for key, selectors in parse_path(path):
        found = []
        for value in current:
            if isinstance(value, dict) and key in value:
                item = value[key]
                if isinstance(item, list):
                    found.extend(item)
                else:
                    found.append(item)
        current = [
            record
            for record in found
            if all(_selected(record, field, want) for field, want in selectors)
        ]
    return current


def _selected(record, field, want):
    actual = get_field(record, field)
    return actual is not MISSING and text_of(actual) == want


def get_field(record, field):
    """A dotted field inside one record (lists are not flattened), or MISSING."""
    value = record
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    return value


def text_of(value):
    """A value as text: a string itself, anything else as JSON."""
    return value if isinstance(value, str) else json_text(value)


def filter_matches(record, filter_):
    """Whether ``record`` satisfies every entry of a ``where``/``with`` filter."""
    for field, matcher in filter_.items():
        actual = get_field(record, field)
        operator = as_operator(matcher)
        if operator is None:
            if actual is MISSING or not loose_eq(actual, matcher):
                return False
        elif not _operator_matches(actual, *operator):
            return False
    return True


def as_operator(matcher):
    """``(name, argument)`` when a filter entry is an operator object, else None
    (the entry is then a literal, compared for equality)."""
    if isinstance(matcher, dict) and len(matcher) == 1:
        ((name, argument),) = matcher.items()
        if name in ("eq", "ne", "contains", "gte", "lte"):
            return name, argument
        if name == "any_of" and isinstance(argument, list):
            return name, argument
        if name == "exists" and isinstance(argument, bool):
            return name, argument
    return None


def _operator_matches(actual, name, want):
    present = actual is not MISSING
    if name == "exists":
        return (present and actual is not None) == want
    if name == "ne":
        return not (present and loose_eq(actual, want))
    if name == "eq":
        return present and loose_eq(actual, want)
    if name == "any_of":
        return present and any(loose_eq(actual, w) for w in want)
    if name == "contains":
        if isinstance(actual, str):
            return lower(text_of(want)) in lower(actual)
        if isinstance(actual, list):
            return any(loose_eq(item, want) for item in actual)
        return False
    if name == "gte":
        order = _compare(actual, want)
        return order is not None and order >= 0
    if name == "lte":
        order = _compare(actual, want)
        return order is not None and order <= 0
    raise ValueError("unknown operator `{}`".format(name))


def _compare(actual, want):
    """-1, 0 or 1 for two numbers or two strings; None for anything else."""
    if is_number(actual) and is_number(want):
        a, b = float(actual), float(want)
    elif isinstance(actual, str) and isinstance(want, str):
        a, b = actual, want
    else:
        return None
    return (a > b) - (a < b)


def loose_eq(a, b):
    """Equality for checks: strings case-insensitively, numbers by value."""
    if isinstance(a, str) and isinstance(b, str):
        return lower(a) == lower(b)
    if is_number(a) and is_number(b):
        return float(a) == float(b)
    return strict_eq(a, b)


def strict_eq(a, b):
    """JSON equality as the server sees it: ``1`` and ``1.0`` differ, and so do
    ``true`` and ``1`` (Python's ``==`` would call both pairs equal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, float) and isinstance(b, float):
        return a == b
    if is_number(a) or is_number(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
