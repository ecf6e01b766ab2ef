"""Task families: a task with ``parameters`` is a family, and a rollout's
``instance_seed`` picks one value of each parameter. Its checks name them as
``{{name}}`` or ``{{name.field}}``; this renders them exactly as the server does
(``src/scenarios/family.rs``): instance 0 takes every first value, instance s > 0 the
value at ``sha256(b"rl-gym task instance" + s as 8 big-endian bytes + name)``'s first
8 bytes (big-endian) modulo the number of values.
"""

import copy
import hashlib
import json

_PASSES = 3


def instance(task, instance_seed):
    """The entry of ``tasks.json`` for one instance: ``task`` itself when it declares
    no parameters."""
    parameters = task.get("parameters") or {}
    if not parameters:
        return task
    values = {name: _pick(instance_seed, name, choices) for name, choices in parameters.items()}
    rendered = copy.deepcopy({k: v for k, v in task.items() if k != "parameters"})
    for _ in range(_PASSES):
        rendered, changed = _substitute(rendered, values)
        if not changed:
            break
    return rendered


def _pick(instance_seed, name, choices):
    if not choices:
        raise ValueError("parameters.{} has no values".format(name))
    if instance_seed == 0:
        return choices[0]
    digest = hashlib.sha256(
        b"rl-gym task instance" + int(instance_seed).to_bytes(8, "big") + name.encode("utf-8")
    ).digest()
    return choices[int.from_bytes(digest[:8], "big") % len(choices)]


def _lookup(values, path):
    parts = path.split(".")
    if parts[0] not in values:
        raise KeyError("{{{{{}}}}} names no parameter {!r}".format(path, parts[0]))
    value = values[parts[0]]
    for part in parts[1:]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError("{{{{{}}}}}: {!r} is not in the value".format(path, part))
    return value


def _text(value):
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _substitute(node, values):
    if isinstance(node, str):
        if "{{" not in node:
            return node, False
        trimmed = node.strip()
        inner = trimmed[2:-2] if trimmed.startswith("{{") and trimmed.endswith("}}") else None
        if inner is not None and "{{" not in inner and "}}" not in inner:
            return copy.deepcopy(_lookup(values, inner.strip())), True
        out, rest, changed = [], node, False
        while "{{" in rest:
            start = rest.index("{{")
            end = rest.find("}}", start + 2)
            if end < 0:
                break
            out.append(rest[:start])
            out.append(_text(_lookup(values, rest[start + 2:end].strip())))
            rest = rest[end + 2:]
            changed = True
        out.append(rest)
        return "".join(out), changed
    if isinstance(node, list):
        changed = False
        items = []
        for item in node:
            item, c = _substitute(item, values)
            items.append(item)
            changed = changed or c
        return items, changed
    if isinstance(node, dict):
        changed = False
        fields = {}
        for key, value in node.items():
            value, c = _substitute(value, values)
            fields[key] = value
            changed = changed or c
        return fields, changed
    return node, False
