"""Who may do what in the CMS: the permission matrix as data, and ``decide`` that reads it (pure).

Roles are ``admin``, ``editor``, ``author``, ``viewer``; a caller without credentials is ``None``
(anonymous). A cell says on which items a role may act: ``any``; ``own`` (the caller wrote it);
``own draft`` (own, and in status draft); ``not archived``; ``published``; ``published or own``;
``-`` means never. Actions on things other than items ignore ownership and status.

=================  =============  =============  =================  =========  =========
action             admin          editor         author             viewer     anonymous
=================  =============  =============  =================  =========  =========
item.create        any            any            any                -          -
item.read          any            any            published or own   published  published
item.update        not archived   not archived   own draft          -          -
item.delete        any            -              -                  -          -
item.schedule      any            any            -                  -          -
item.revisions     any            any            own                -          -
item.restore       not archived   not archived   own draft          -          -
bulk               any            any            -                  -          -
taxonomy.manage    any            any            -                  -          -
user.manage        any            -              -                  -          -
key.manage         any            -              -                  -          -
webhook.manage     any            -              -                  -          -
audit.read         any            -              -                  -          -
schedule.read      any            any            -                  -          -
schedule.manage    any            -              -                  -          -
=================  =============  =============  =================  =========  =========

``item.restore`` writes an old revision's content as a new version, so it follows ``item.update``:
archived items are read-only for everyone until reopened (``archived->draft``).

Workflow moves are the actions ``item.transition:<from>-><to>``; any other pair is refused for all:

=====================  =====  ======  ======  ======  =========
move                   admin  editor  author  viewer  anonymous
=====================  =====  ======  ======  ======  =========
draft->in_review       any    any     own     -       -
in_review->draft       any    any     -       -       -
in_review->published   any    any     -       -       -
draft->published       any    any     -       -       -
published->archived    any    any     -       -       -
published->draft       any    any     -       -       -
archived->draft        any    any     -       -       -
=====================  =====  ======  ======  ======  =========

Every refusal's reason says what was refused, why, and who may do it instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from storage.cms_actions import TRANSITION_PREFIX
from storage.cms_actions import transition_action as transition_action  # the workflow's action names
from storage.cms_models import ROLES, STATUSES

#: The column of callers without credentials.
ANONYMOUS = "anonymous"


class Grant(StrEnum):
    """On which items a role may act (a missing cell means never)."""

    ANY = "any"
    OWN = "own"
    OWN_DRAFT = "own draft"
    NOT_ARCHIVED = "not archived"
    PUBLISHED = "published"
    PUBLISHED_OR_OWN = "published or own"


#: Grants that cannot be decided without the item's status.
STATUS_GRANTS = frozenset({Grant.OWN_DRAFT, Grant.NOT_ARCHIVED, Grant.PUBLISHED, Grant.PUBLISHED_OR_OWN})


@dataclass(frozen=True)
class Rule:
    """One row of the matrix. ``phrase`` has an ``{items}`` slot: "edit {items}"."""

    phrase: str
    grants: Mapping[str, Grant]

    @property
    def needs_status(self) -> bool:
        return any(g in STATUS_GRANTS for g in self.grants.values())


_A, _E, _AU, _V = ROLES  # admin, editor, author, viewer
_ANY = Grant.ANY
_ADMIN_ONLY: Mapping[str, Grant] = {_A: _ANY}
_STAFF: Mapping[str, Grant] = {_A: _ANY, _E: _ANY}

#: The matrix (rows of the first table of the docstring).
MATRIX: Mapping[str, Rule] = {
    "item.create": Rule("create {items}", {_A: _ANY, _E: _ANY, _AU: _ANY}),
    "item.read": Rule(
        "read {items}",
        {_A: _ANY, _E: _ANY, _AU: Grant.PUBLISHED_OR_OWN, _V: Grant.PUBLISHED, ANONYMOUS: Grant.PUBLISHED},
    ),
    "item.update": Rule(
        "edit {items}", {_A: Grant.NOT_ARCHIVED, _E: Grant.NOT_ARCHIVED, _AU: Grant.OWN_DRAFT}
    ),
    "item.delete": Rule("delete {items}", _ADMIN_ONLY),
    "item.schedule": Rule("schedule publishing of {items}", _STAFF),
    "item.revisions": Rule("see the revisions of {items}", {_A: _ANY, _E: _ANY, _AU: Grant.OWN}),
    "item.restore": Rule(
        "restore revisions of {items}", {_A: Grant.NOT_ARCHIVED, _E: Grant.NOT_ARCHIVED, _AU: Grant.OWN_DRAFT}
    ),
    "bulk": Rule("run bulk actions on {items}", _STAFF),
    "taxonomy.manage": Rule("manage categories and tags", _STAFF),
    "user.manage": Rule("manage users", _ADMIN_ONLY),
    "key.manage": Rule("manage API keys", _ADMIN_ONLY),
    "webhook.manage": Rule("manage webhooks", _ADMIN_ONLY),
    "audit.read": Rule("read the audit log", _ADMIN_ONLY),
    "schedule.read": Rule("see the job schedules and their runs", _STAFF),
    "schedule.manage": Rule("pause, resume or run scheduled jobs", _ADMIN_ONLY),
}

#: The workflow (the second table of the docstring), in the order moves are offered.
WORKFLOW: Mapping[tuple[str, str], Rule] = {
    ("draft", "in_review"): Rule("submit {items} for review", {_A: _ANY, _E: _ANY, _AU: Grant.OWN}),
    ("in_review", "draft"): Rule("send {items} back from review to draft", _STAFF),
    ("in_review", "published"): Rule("publish {items} in review", _STAFF),
    ("draft", "published"): Rule("publish {items} straight from draft", _STAFF),
    ("published", "archived"): Rule("archive {items}", _STAFF),
    ("published", "draft"): Rule("unpublish {items} back to draft", _STAFF),
    ("archived", "draft"): Rule("reopen archived {items} as drafts", _STAFF),
}

#: Every action name ``decide`` knows.
ACTIONS: tuple[str, ...] = (*MATRIX, *(transition_action(a, b) for a, b in WORKFLOW))

_PLURAL = {_A: "admins", _E: "editors", _AU: "authors", _V: "viewers", ANONYMOUS: "anonymous callers"}
#: How each grant narrows "{items}" in a refusal ("authors may edit only their own drafts").
_NARROWED = {
    Grant.ANY: "items",
    Grant.OWN: "only their own items",
    Grant.OWN_DRAFT: "only their own drafts",
    Grant.NOT_ARCHIVED: "only items that are not archived",
    Grant.PUBLISHED: "only published items",
    Grant.PUBLISHED_OR_OWN: "only published items and their own",
}
#: How each grant reads in the "who may" list.
_SHORT = {
    Grant.OWN: "own items",
    Grant.OWN_DRAFT: "own drafts",
    Grant.NOT_ARCHIVED: "items not archived",
    Grant.PUBLISHED: "published items",
    Grant.PUBLISHED_OR_OWN: "published and own items",
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def _and(words: list[str], conjunction: str = "and") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def who_may(rule: Rule) -> str:
    """``Who may edit items: admins and editors (items not archived); authors (own drafts).``"""
    groups: dict[Grant, list[str]] = {}
    for role in (*ROLES, ANONYMOUS):
        if role in rule.grants:
            groups.setdefault(rule.grants[role], []).append(_PLURAL[role])
    parts = [_and(roles) + ("" if g is Grant.ANY else f" ({_SHORT[g]})") for g, roles in groups.items()]
    return f"Who may {rule.phrase.format(items='items')}: {'; '.join(parts) or 'nobody'}."


def _check_role(role: str | None) -> str:
    if role is None or role == ANONYMOUS:
        return ANONYMOUS
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of: {', '.join(ROLES)} (or None for anonymous)")
    return role


def _holds(grant: Grant, *, owner: bool, status: str | None) -> tuple[bool, str]:
    """Whether a grant covers the item, and if not, what about the item is in the way."""
    published = status == "published"
    if grant is Grant.ANY:
        return True, ""
    if grant is Grant.OWN:
        return owner, "someone else's"
    if grant is Grant.OWN_DRAFT:
        return owner and status == "draft", f"{status}" if owner else "someone else's"
    if grant is Grant.NOT_ARCHIVED:
        return status != "archived", "archived; reopen it first (archived->draft)"
    if grant is Grant.PUBLISHED:
        return published, f"{status}"
    return published or owner, f"{status} and someone else's"  # PUBLISHED_OR_OWN


def _judge(rule: Rule, role: str, *, owner: bool, status: str | None, target: str) -> Decision:
    grant = rule.grants.get(role)
    if grant is None:
        refusal = f"{_PLURAL[role]} may not {rule.phrase.format(items='items')}"
        if role == ANONYMOUS:
            refusal += "; sign in"
        return Decision(False, f"{refusal}. {who_may(rule)}")
    ok, fact = _holds(grant, owner=owner, status=status)
    narrowed = rule.phrase.format(items=_NARROWED[grant])
    if ok:
        return Decision(True, f"{_PLURAL[role]} may {narrowed}")
    return Decision(False, f"{_PLURAL[role]} may {narrowed}; {target} is {fact}. {who_may(rule)}")


def decide(
    principal_role: str | None,
    action: str,
    *,
    owner: bool = False,
    status: str | None = None,
    item_id: int | None = None,
) -> Decision:
    """Whether a caller of ``principal_role`` (``None``: anonymous) may do ``action``.

    ``owner``: the caller wrote the item. ``status``: the item's status, required by the actions whose
    answer depends on it (``item.read``, ``item.update``, ``item.restore``); workflow moves take theirs from
    the action name. ``item_id`` only names the item in the reason. An unknown action, role or status is
    a programming error (``ValueError``); a move outside the workflow is a refusal.
    """
    role = _check_role(principal_role)
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
    target = f"item {item_id}" if item_id is not None else "the item"
    if action.startswith(TRANSITION_PREFIX):
        current, arrow, wanted = action[len(TRANSITION_PREFIX) :].partition("->")
        if not arrow:
            raise ValueError(f"malformed workflow action {action!r}; write item.transition:<from>-><to>")
        rule = WORKFLOW.get((current, wanted))
        if rule is None:
            onward = [b for a, b in WORKFLOW if a == current]
            if current not in STATUSES:
                why = f"{current!r} is not a status (statuses: {', '.join(STATUSES)})"
            else:
                why = f"from {current} an item can move to {_and(onward, 'or') if onward else 'nothing'}"
            return Decision(False, f"{current}->{wanted} is not a workflow move; {why}. Nobody may make it.")
        return _judge(rule, role, owner=owner, status=current, target=target)
    rule = MATRIX.get(action)
    if rule is None:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(MATRIX)} and {TRANSITION_PREFIX}...")
    if status is None and rule.needs_status:
        raise ValueError(f"{action} depends on the item's status; pass status=")
    return _judge(rule, role, owner=owner, status=status, target=target)


def allowed_transitions(role: str | None, status: str, owner: bool = False) -> list[str]:
    """The statuses a caller may move an item in ``status`` to, in workflow order."""
    return [
        wanted
        for current, wanted in WORKFLOW
        if current == status and decide(role, transition_action(current, wanted), owner=owner).allowed
    ]
