"""What the CMS records: audit actions, workflow moves and outbox event types (the values stored in
``cms_audit.action`` and ``cms_events.type``, and sent to webhooks as ``X-Pulse-Event``).

Fixed actions and event types are ``StrEnum`` members, so they compare and serialise as their values. A
workflow move is ``item.transition:<from>-><to>``; every pair of statuses has one (a pair outside the
workflow is refused by the permission check, and the refusal is audit-logged under that name).
"""

from __future__ import annotations

from enum import StrEnum

#: Prefix of workflow actions: ``item.transition:draft->in_review``.
TRANSITION_PREFIX = "item.transition:"


class AuditAction(StrEnum):
    """An action of the audit log (``cms_audit.action``) other than a workflow move."""

    AUTH_LOGIN = "auth.login"
    ITEM_CREATE = "item.create"
    ITEM_READ = "item.read"
    ITEM_UPDATE = "item.update"
    ITEM_DELETE = "item.delete"
    ITEM_SCHEDULE = "item.schedule"
    ITEM_REVISIONS = "item.revisions"
    ITEM_RESTORE = "item.restore"
    CATEGORY_CREATE = "category.create"
    TAG_CREATE = "tag.create"
    USER_CREATE = "user.create"
    USER_LIST = "user.list"
    USER_UPDATE = "user.update"
    USER_DELETE = "user.delete"
    KEY_CREATE = "key.create"
    KEY_LIST = "key.list"
    KEY_REVOKE = "key.revoke"
    AUDIT_READ = "audit.read"
    WEBHOOK_CREATE = "webhook.create"
    WEBHOOK_LIST = "webhook.list"
    WEBHOOK_DELETE = "webhook.delete"
    WEBHOOK_LOG = "webhook.log"
    BULK_CREATE = "bulk.create"
    BULK_UPDATE = "bulk.update"
    BULK_PUBLISH = "bulk.publish"
    BULK_ARCHIVE = "bulk.archive"
    SCHEDULE_LIST = "schedule.list"
    SCHEDULE_RUNS = "schedule.runs"
    SCHEDULE_PAUSE = "schedule.pause"
    SCHEDULE_RESUME = "schedule.resume"
    SCHEDULE_RUN_NOW = "schedule.run_now"


class TransitionAction(str):
    """A workflow move's action, ``item.transition:<from>-><to>`` (build it with ``transition_action``)."""

    __slots__ = ()


def transition_action(current: str, target: str) -> TransitionAction:
    """The action name of a workflow move: ``item.transition:draft->in_review``."""
    return TransitionAction(f"{TRANSITION_PREFIX}{current}->{target}")


#: Any action of the audit log.
Action = AuditAction | TransitionAction


class EventType(StrEnum):
    """The type of an outbox event (``cms_events.type``); webhooks subscribe to these (``item.*``)."""

    ITEM_CREATED = "item.created"
    ITEM_UPDATED = "item.updated"
    ITEM_PUBLISHED = "item.published"
    ITEM_ARCHIVED = "item.archived"
    ITEM_STATUS_CHANGED = "item.status_changed"
    ITEM_DELETED = "item.deleted"
    BULK_CREATE = "bulk.create"
    BULK_UPDATE = "bulk.update"
    BULK_PUBLISH = "bulk.publish"
    BULK_ARCHIVE = "bulk.archive"
    CATEGORY_CREATED = "category.created"
    TAG_CREATED = "tag.created"
    SCHEDULE_LIST = "schedule.list"
    SCHEDULE_RUNS = "schedule.runs"
    SCHEDULE_PAUSE = "schedule.pause"
    SCHEDULE_RESUME = "schedule.resume"
    SCHEDULE_RUN_NOW = "schedule.run_now"


#: Event of a move into a status (other moves are ``item.status_changed``).
STATUS_EVENTS = {"published": EventType.ITEM_PUBLISHED, "archived": EventType.ITEM_ARCHIVED}
