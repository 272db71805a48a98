"""The whole CMS permission matrix, cell by cell, against a table written out here by hand.

The expected table is deliberately not derived from ``serve_apps.cms.permissions``: a change to the
module's data that is not also made here fails. Cells read ``Y`` (allowed) or ``.`` (refused), one per
status in the order draft, in_review, published, archived; each role has two rows: own item, other's.
"""

from __future__ import annotations

import pytest

from serve_apps.cms.permissions import ACTIONS, allowed_transitions, decide, transition_action

ROLES = ("admin", "editor", "author", "viewer", None)  # None: anonymous
STATUSES = ("draft", "in_review", "published", "archived")
ALL = ("YYYY", "YYYY")
NONE = ("....", "....")

#: action -> role -> (own item, someone else's item), per status.
EXPECTED: dict[str, dict[str | None, tuple[str, str]]] = {
    "item.create": {"admin": ALL, "editor": ALL, "author": ALL, "viewer": NONE, None: NONE},
    "item.read": {
        "admin": ALL,
        "editor": ALL,
        "author": ("YYYY", "..Y."),
        "viewer": ("..Y.", "..Y."),
        None: ("..Y.", "..Y."),
    },
    "item.update": {
        "admin": ("YYY.", "YYY."),
        "editor": ("YYY.", "YYY."),
        "author": ("Y...", "...."),
        "viewer": NONE,
        None: NONE,
    },
    "item.delete": {"admin": ALL, "editor": NONE, "author": NONE, "viewer": NONE, None: NONE},
    "item.schedule": {"admin": ALL, "editor": ALL, "author": NONE, "viewer": NONE, None: NONE},
    "item.revisions": {"admin": ALL, "editor": ALL, "author": ("YYYY", "...."), "viewer": NONE, None: NONE},
    "item.restore": {
        "admin": ("YYY.", "YYY."),
        "editor": ("YYY.", "YYY."),
        "author": ("Y...", "...."),
        "viewer": NONE,
        None: NONE,
    },
    "bulk": {"admin": ALL, "editor": ALL, "author": NONE, "viewer": NONE, None: NONE},
    "taxonomy.manage": {"admin": ALL, "editor": ALL, "author": NONE, "viewer": NONE, None: NONE},
    "user.manage": {"admin": ALL, "editor": NONE, "author": NONE, "viewer": NONE, None: NONE},
    "key.manage": {"admin": ALL, "editor": NONE, "author": NONE, "viewer": NONE, None: NONE},
    "webhook.manage": {"admin": ALL, "editor": NONE, "author": NONE, "viewer": NONE, None: NONE},
    "audit.read": {"admin": ALL, "editor": NONE, "author": NONE, "viewer": NONE, None: NONE},
    "schedule.read": {"admin": ALL, "editor": ALL, "author": NONE, "viewer": NONE, None: NONE},
    "schedule.manage": {"admin": ALL, "editor": NONE, "author": NONE, "viewer": NONE, None: NONE},
}
#: Actions whose answer does not depend on the item's status (they also work with status=None).
STATUS_FREE = {a for a in EXPECTED if a not in ("item.read", "item.update", "item.restore")}

#: Workflow moves: role -> (own item, other's item), each a 4x4 grid "from row -> to column" in STATUSES
#: order, rows separated by spaces.
STAFF_MOVES = ".YY. Y.Y. Y..Y Y..."
NO_MOVES = ".... .... .... ...."
EXPECTED_MOVES: dict[str | None, tuple[str, str]] = {
    "admin": (STAFF_MOVES, STAFF_MOVES),
    "editor": (STAFF_MOVES, STAFF_MOVES),
    "author": (".Y.. .... .... ....", NO_MOVES),
    "viewer": (NO_MOVES, NO_MOVES),
    None: (NO_MOVES, NO_MOVES),
}


def _check_reason(role: str | None, action: str, allowed: bool, reason: str) -> list[str]:
    if not reason.strip():
        return [f"{role} {action}: empty reason"]
    if not allowed and "Who may" not in reason and "Nobody may" not in reason:
        return [f"{role} {action}: refusal does not say who may: {reason!r}"]
    return []


@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_every_cell_of_the_matrix(action: str) -> None:
    mismatches: list[str] = []
    for role in ROLES:
        for owner, row in zip((True, False), EXPECTED[action][role], strict=True):
            for status, cell in zip(STATUSES, row, strict=True):
                decision = decide(role, action, owner=owner, status=status)
                if decision.allowed != (cell == "Y"):
                    mismatches.append(f"{role} owner={owner} {status}: got {decision.allowed}, want {cell}")
                mismatches += _check_reason(role, action, decision.allowed, decision.reason)
            if action in STATUS_FREE:
                assert len(set(row)) == 1, "a status-free row must be uniform"
                if decide(role, action, owner=owner).allowed != (row[0] == "Y"):
                    mismatches.append(f"{role} owner={owner} status=None disagrees")
    assert not mismatches, "\n".join(mismatches)


def test_every_workflow_cell() -> None:
    mismatches: list[str] = []
    for role in ROLES:
        for owner, grid in zip((True, False), EXPECTED_MOVES[role], strict=True):
            for current, row in zip(STATUSES, grid.split(), strict=True):
                for target, cell in zip(STATUSES, row, strict=True):
                    action = transition_action(current, target)
                    for status in (current, None):
                        decision = decide(role, action, owner=owner, status=status)
                        if decision.allowed != (cell == "Y"):
                            mismatches.append(f"{role} owner={owner} {action}: got {decision.allowed}")
                        mismatches += _check_reason(role, action, decision.allowed, decision.reason)
                expected = [t for t, c in zip(STATUSES, row, strict=True) if c == "Y"]
                if sorted(allowed_transitions(role, current, owner)) != sorted(expected):
                    mismatches.append(f"allowed_transitions({role}, {current}, {owner}) != {expected}")
    assert not mismatches, "\n".join(mismatches)


def test_the_module_knows_exactly_the_actions_tested_here() -> None:
    moves = {
        transition_action(a, b)
        for a, b in [
            ("draft", "in_review"),
            ("in_review", "draft"),
            ("in_review", "published"),
            ("draft", "published"),
            ("published", "archived"),
            ("published", "draft"),
            ("archived", "draft"),
        ]
    }
    assert set(ACTIONS) == set(EXPECTED) | moves


def test_refusals_name_the_item_and_the_rule() -> None:
    reason = decide("author", "item.update", owner=True, status="in_review", item_id=12).reason
    assert reason.startswith("authors may edit only their own drafts; item 12 is in_review")
    assert "editors" in reason  # who may instead
    other = decide("author", "item.update", owner=False, status="draft", item_id=5).reason
    assert "item 5 is someone else's" in other
    archived = decide("editor", "item.update", status="archived", item_id=3).reason
    assert "item 3 is archived" in archived and "archived->draft" in archived
    assert "sign in" in decide(None, "item.create").reason
    assert "Who may delete items: admins." in decide("editor", "item.delete").reason
    publish = decide("author", "item.transition:in_review->published", owner=True).reason
    assert "authors may not publish" in publish and "admins and editors" in publish


def test_moves_outside_the_workflow_are_refused_to_everyone() -> None:
    for role in ROLES:
        for action in ("item.transition:draft->archived", "item.transition:draft->nowhere"):
            decision = decide(role, action, owner=True)
            assert not decision.allowed
            assert "not a workflow move" in decision.reason and "Nobody may" in decision.reason
    assert "in_review or published" in decide("admin", "item.transition:draft->archived").reason


def test_allowed_transitions_examples() -> None:
    assert allowed_transitions("author", "draft", True) == ["in_review"]
    assert allowed_transitions("author", "draft", False) == []
    assert allowed_transitions("editor", "draft") == ["in_review", "published"]
    assert allowed_transitions("admin", "published") == ["archived", "draft"]
    assert allowed_transitions(None, "draft", True) == []


@pytest.mark.parametrize(
    ("role", "action", "status"),
    [
        ("admin", "item.fly", None),  # unknown action
        ("root", "item.create", None),  # unknown role
        ("admin", "item.update", None),  # status needed
        ("admin", "item.read", "deleted"),  # unknown status
        ("admin", "item.transition:draft", None),  # malformed move
    ],
)
def test_programming_errors_raise(role: str, action: str, status: str | None) -> None:
    with pytest.raises(ValueError):
        decide(role, action, status=status)


def test_decision_is_truthy_when_allowed_and_anonymous_string_is_accepted() -> None:
    assert decide("admin", "item.delete")
    assert not decide("viewer", "item.delete")
    assert decide("anonymous", "item.read", status="published").allowed
