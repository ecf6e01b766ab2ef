"""The check language of rl-gym: a faithful port of the server's verifier.

A task's programmatic checks are data (see ``tasks.json``). Each check is
``{"id", "description", "kind", ...}`` plus ``"required"`` (default false) and
``"weight"`` (default 1). Kinds:

- ``state_count`` -- ``{"path", "where"?, "equals"?, "at_least"?, "at_most"?}``:
  the number of records at ``path`` that match ``where``.
- ``state_field_equals`` -- ``{"path", "where"?, "field", "equals"}``: exactly
  one record at ``path`` matches ``where``, and its ``field`` equals ``equals``
  (strings case-insensitively, numbers by value).
- ``no_double_booking`` -- ``{"attendees"?: [email]}``: no two calendar events
  that are not cancelled overlap for a shared attendee; limited to the listed
  people when given.
- ``email_sent`` -- ``{"to"?, "subject_contains"?, "body_contains"?,
  "body_contains_any"?, "body_excludes"?}``: some sent email has every ``to``
  address among its recipients (to + cc), every ``subject_contains`` in its
  subject, every ``body_contains``, at least one ``body_contains_any`` and none
  of ``body_excludes`` in its body (all case-insensitive).
- ``trajectory_mentions`` -- ``{"contains"?, "any_of"?, "scope"?:
  "final_answer" | "any_assistant"}``: the last assistant message with text (or
  every assistant message) contains every ``contains`` and one of ``any_of``
  (case-insensitive).
- ``tool_called`` / ``tool_not_called`` -- ``{"tool", "with"?, "at_least"?}``:
  the assistant called (did not call) ``tool`` with arguments matching ``with``.

Paths and filters are described in ``paths.py``.

**Scoring.** If any ``required`` check fails the score is 0.0 ("No Credit").
Otherwise it is the weight of the passed checks over the total weight: 1.0 is
"Full Credit", 0.0 "No Credit", anything in between "Partial Credit" -- unless
the task's ``scoring.partial_credit`` is false, in which case anything short of
every check passing scores 0.0.

Every function here mirrors one in the server's ``src/verify/mod.rs``, down to
the wording of each ``reason``; change both or neither.
"""

import json

from .paths import MISSING, PathError, filter_matches, get_field, loose_eq, resolve
from .text import debug_list, json_text, lower, trim

FULL_CREDIT = "Full Credit"
PARTIAL_CREDIT = "Partial Credit"
NO_CREDIT = "No Credit"


def verify_task(task, state, trajectory):
    """Scores one rollout of ``task`` (an entry of ``tasks.json``: its ``checks``
    and ``scoring``) from the final ``state`` and the ``trajectory`` (OpenAI chat
    messages). Returns ``{"score", "label", "checks": [{"id", "description",
    "passed", "reason"}]}``."""
    checks = task.get("checks") or []
    partial_credit = (task.get("scoring") or {}).get("partial_credit", True)
    results = []
    total = passed_weight = 0.0
    required_failed = False
    for check in checks:
        passed, reason = evaluate(check, state, trajectory)
        weight = check.get("weight", 1.0)
        total += weight
        if passed:
            passed_weight += weight
        elif check.get("required", False):
            required_failed = True
        results.append(
            {
                "id": check["id"],
                "description": check["description"],
                "passed": passed,
                "reason": reason,
            }
        )
    if results and all(r["passed"] for r in results):
        score = 1.0
    elif required_failed or total <= 0.0 or not partial_credit:
        score = 0.0
    else:
        score = passed_weight / total
    return {"score": score, "label": label_of(score), "checks": results}


def label_of(score):
    """The scoring label of a score in [0, 1]."""
    if score >= 1.0:
        return FULL_CREDIT
    if score <= 0.0:
        return NO_CREDIT
    return PARTIAL_CREDIT


def combine(verdict, rubric=None):
    """A rollout's ``{"score", "label"}`` from its checks' ``verdict`` and its
    ``rubric`` grade (the rollout view's fields of those names), as the server's
    ``score`` and ``label``: without a graded rubric the verdict stands; a task with
    no checks is scored by the rubric alone; otherwise a verdict of 0 stays 0 and any
    other score is the mean of the two."""
    graded = None
    if rubric and rubric.get("status") == "graded":
        graded = rubric.get("score")
    if graded is None:
        score = verdict["score"]
    elif not verdict.get("checks"):
        score = graded
    elif verdict["score"] <= 0.0:
        score = 0.0
    else:
        score = (verdict["score"] + graded) / 2.0
    return {"score": score, "label": label_of(score)}


def evaluate(check, state, trajectory):
    """Evaluates one check: ``(passed, reason)``."""
    kind = check.get("kind")
    evaluator = _EVALUATORS.get(kind)
    if evaluator is None:
        raise ValueError("check `{}` has an unknown kind `{}`".format(check.get("id"), kind))
    return evaluator(check, state, trajectory)


# ---------------------------------------------------------------------------
# The kinds


def _state_count(check, state, _trajectory):
    path = check["path"]
    try:
        records = resolve(state, path)
    except PathError as error:
        return False, str(error)
    where = check.get("where") or {}
    n = sum(1 for record in records if filter_matches(record, where))
    equals, at_least, at_most = (check.get(k) for k in ("equals", "at_least", "at_most"))
    ok = (
        (equals is None or n == equals)
        and (at_least is None or n >= at_least)
        and (at_most is None or n <= at_most)
    )
    wanted = []
    if equals is not None:
        wanted.append("= {}".format(equals))
    if at_least is not None:
        wanted.append(">= {}".format(at_least))
    if at_most is not None:
        wanted.append("<= {}".format(at_most))
    return ok, "{} matching record(s) at `{}`, wanted {}".format(n, path, " and ".join(wanted))


def _state_field_equals(check, state, _trajectory):
    path, field, equals = check["path"], check["field"], check["equals"]
    try:
        records = resolve(state, path)
    except PathError as error:
        return False, str(error)
    where = check.get("where") or {}
    hits = [record for record in records if filter_matches(record, where)]
    if len(hits) == 1:
        actual = get_field(hits[0], field)
        ok = actual is not MISSING and loose_eq(actual, equals)
        shown = "missing" if actual is MISSING else json_text(actual)
        return ok, "`{}` is {}, wanted {}".format(field, shown, json_text(equals))
    if not hits:
        return False, "no record at `{}` matches the filter".format(path)
    return False, "{} records at `{}` match the filter, wanted exactly one".format(
        len(hits), path
    )


def _no_double_booking(check, state, _trajectory):
    only = [lower(person) for person in check.get("attendees") or []]
    events = resolve(state, "calendar.events")
    live = [event for event in events if _get(event, "status") != "cancelled"]
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            overlap = _text(a, "start") < _text(b, "end") and _text(b, "start") < _text(a, "end")
            if not overlap:
                continue
            in_b = _participants(b)
            for who in _participants(a):
                if who in in_b and (not only or who in only):
                    return False, "{} is double-booked: {} and {} overlap".format(
                        who, _text(a, "id"), _text(b, "id")
                    )
    return True, "nobody is double-booked"


def _participants(event):
    attendees = _get(event, "attendees")
    if not isinstance(attendees, list):
        return []
    return [lower(a) for a in attendees if isinstance(a, str)]


def _email_sent(check, state, _trajectory):
    to = [lower(t) for t in check.get("to") or []]
    subject_contains = [lower(s) for s in check.get("subject_contains") or []]
    body_contains = [lower(s) for s in check.get("body_contains") or []]
    body_contains_any = [lower(s) for s in check.get("body_contains_any") or []]
    body_excludes = [lower(s) for s in check.get("body_excludes") or []]
    sent = resolve(state, "email.messages[folder=sent]")
    for message in sent:
        recipients = []
        for key in ("to", "cc"):
            values = _get(message, key)
            if isinstance(values, list):
                recipients.extend(lower(v) for v in values if isinstance(v, str))
        subject = lower(_text(message, "subject"))
        body = lower(_text(message, "body"))
        if (
            all(t in recipients for t in to)
            and all(s in subject for s in subject_contains)
            and all(s in body for s in body_contains)
            and (not body_contains_any or any(s in body for s in body_contains_any))
            and not any(s in body for s in body_excludes)
        ):
            message_id = _get(message, "id")
            shown = json_text(None if message_id is MISSING else message_id)
            return True, "sent email {} matches".format(shown)
    return False, "none of the {} sent email(s) matches".format(len(sent))


def _trajectory_mentions(check, _state, trajectory):
    contains = check.get("contains") or []
    any_of = check.get("any_of") or []
    texts = assistant_texts(trajectory)
    if check.get("scope", "final_answer") == "any_assistant":
        haystack = "\n".join(texts)
    else:
        haystack = texts[-1] if texts else ""
    haystack = lower(haystack)
    missing = [c for c in contains if lower(c) not in haystack]
    any_ok = not any_of or any(lower(c) in haystack for c in any_of)
    if not missing and any_ok:
        return True, "the answer mentions what is expected"
    if missing:
        return False, "the answer does not mention {}".format(debug_list(missing))
    return False, "the answer mentions none of {}".format(debug_list(any_of))


def _tool_called(check, _state, trajectory):
    tool, at_least = check["tool"], check.get("at_least", 1)
    n = count_calls(trajectory, tool, check.get("with") or {})
    return n >= at_least, "`{}` called {} time(s) with matching arguments, wanted >= {}".format(
        tool, n, at_least
    )


def _tool_not_called(check, _state, trajectory):
    tool = check["tool"]
    n = count_calls(trajectory, tool, check.get("with") or {})
    return n == 0, "`{}` called {} time(s) with matching arguments, wanted none".format(tool, n)


_EVALUATORS = {
    "state_count": _state_count,
    "state_field_equals": _state_field_equals,
    "no_double_booking": _no_double_booking,
    "email_sent": _email_sent,
    "trajectory_mentions": _trajectory_mentions,
    "tool_called": _tool_called,
    "tool_not_called": _tool_not_called,
}


# ---------------------------------------------------------------------------
# The trajectory


def assistant_texts(trajectory):
    """The non-blank text of every assistant message, in order."""
    return [
        message["content"]
        for message in _assistant_messages(trajectory)
        if isinstance(message.get("content"), str) and trim(message["content"]) != ""
    ]


def count_calls(trajectory, tool, with_):
    """How many times the assistant called ``tool`` with arguments matching ``with_``.
    Arguments that are not valid JSON match only an empty filter."""
    n = 0
    for message in _assistant_messages(trajectory):
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            if function.get("name") != tool:
                continue
            if not with_:
                n += 1
                continue
            arguments = _parse_arguments(function.get("arguments"))
            if arguments is not MISSING and filter_matches(arguments, with_):
                n += 1
    return n


def _assistant_messages(trajectory):
    return [m for m in trajectory or [] if isinstance(m, dict) and m.get("role") == "assistant"]


def _reject_constant(name):
    raise ValueError("{} is not JSON".format(name))


def _parse_arguments(text):
    """The JSON of a tool call's arguments, or MISSING when it is not valid JSON
    (``NaN`` and ``Infinity`` included, which the server's parser refuses)."""
    if not isinstance(text, str):
        return MISSING
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return MISSING


# ---------------------------------------------------------------------------
# Record access


def _get(record, key):
    """``record[key]`` for an object that has the key, else MISSING."""
    if isinstance(record, dict) and key in record:
        return record[key]
    return MISSING


def _text(record, key):
    """``record[key]`` when it is a string, else the empty string."""
    value = _get(record, key)
    return value if isinstance(value, str) else ""
