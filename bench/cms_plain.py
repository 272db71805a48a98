"""The baseline servers of ``bench/cms.py``: the CMS item routes in one plain uvicorn process, no Ray.

Two implementations, both under ``/v1/cms`` on the same PostgreSQL database as the Serve app:

``--impl lean`` (the baseline): what a competent engineer would write without Ray Serve. FastAPI +
uvicorn (one worker, uvloop and httptools), SQLAlchemy 2.0 Core on an async psycopg 3 engine with the
product's pool options (``storage.database.make_async_engine``: pool_size + overflow, pre-ping). Each
request verifies its HS256 access token with pyjwt (same secret, issuer and required claims as the
product) and counts against the product's in-memory rate limiter (``RateLimits``, same limits), so auth
and limiting cost the same. Same routes, same request and response schemas (``serve_apps.cms.schemas``,
bodies sanitised with the product's ``sanitize_html`` on output, ``allowed_transitions`` from the product's
permission matrix):

- ``GET /items/{id}`` (with a token, or anonymous for published items): one SELECT of the item with its
  category slug and its tags (``array_agg`` subquery), as ``ContentRepository.get`` builds it, but naming
  only the columns the answer needs. No cache.
- ``PATCH /items/{id}`` (optional ``If-Match``): one transaction: ``SELECT ... FOR UPDATE`` (the before
  state), ``UPDATE ... SET <fields>, version = version + 1, updated_at = now() RETURNING``, then the
  revision, outbox event and audit rows with the same JSON payloads as ``ContentRepository.update``
  (three INSERTs), COMMIT. Only plain text fields (titles, summaries, bodies, image URL) are accepted:
  what the benchmark sends.

``--impl product``: the product's own FastAPI app (``serve_apps.cms.app.build_api``, its middleware,
error handlers, dependencies, ORM repositories and response code) served by uvicorn without Serve, on a
``CmsContext`` built here as the deployment's constructor builds it. Same code as the Serve app, minus
Serve: the difference between the two is Serve's proxy and the hop to the replica.

    python bench/cms_plain.py --impl lean --database-url URL --port 8200
    (the token secret comes from $PULSE_BENCH_JWT_SECRET)
"""

import argparse
import os
from contextlib import asynccontextmanager
from typing import Annotated, Any

import uvicorn
from common import ROOT  # noqa: F401  (puts the repository root on sys.path)
from fastapi import FastAPI, Header, Path, Request, Response
from fastapi.responses import JSONResponse

from serve_apps.cms import schemas as s

#: Fields the lean PATCH accepts (plain text columns; the benchmark changes summaries).
LEAN_FIELDS = (
    "title_en",
    "title_ar",
    "summary_en",
    "summary_ar",
    "body_en",
    "body_ar",
    "featured_image_url",
)
#: Columns an answer needs (not the search vectors nor the derived body text).
ITEM_COLUMNS = (
    "id, type, status, author_id, title_en, title_ar, summary_en, summary_ar, body_en, body_ar, "
    "slug_en, slug_ar, featured_image_url, seo, publish_at, unpublish_at, published_at, version, "
    "created_at, updated_at"
)
GET_SQL = (
    "SELECT "
    + ", ".join(f"i.{c.strip()}" for c in ITEM_COLUMNS.split(","))
    + ", c.slug AS category, (SELECT array_agg(t.slug) FROM cms_item_tags it JOIN cms_tags t"
    " ON t.id = it.tag_id WHERE it.item_id = i.id) AS tags"
    " FROM cms_items i LEFT JOIN cms_categories c ON c.id = i.category_id WHERE i.id = :id"
)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class ApiFailure(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _data(row: dict[str, Any]) -> dict[str, Any]:
    """``ItemRow.data()``: the editable state as JSON (revisions, audit, events)."""
    out: dict[str, Any] = {"type": row["type"], "category": row["category"], "tags": row["tags"]}
    for f in ("title", "summary", "body", "slug"):
        for loc in ("en", "ar"):
            out[f"{f}_{loc}"] = row[f"{f}_{loc}"]
    out["featured_image_url"] = row["featured_image_url"]
    out["seo"] = dict(row["seo"] or {})
    out["publish_at"] = row["publish_at"].isoformat() if row["publish_at"] else None
    out["unpublish_at"] = row["unpublish_at"].isoformat() if row["unpublish_at"] else None
    return out


def _state(row: dict[str, Any]) -> dict[str, Any]:
    return {**_data(row), "status": row["status"], "version": row["version"]}


class LeanItems:
    """The lean baseline's SQL: one read, and one write transaction (on an ``AsyncConnection``)."""

    def __init__(self) -> None:
        from sqlalchemy import bindparam, text
        from sqlalchemy.dialects.postgresql import JSONB

        self.text = text
        self.get_stmt = text(GET_SQL)
        self.lock_stmt = text(GET_SQL + " FOR UPDATE OF i")
        self.revision_stmt = text(
            "INSERT INTO cms_revisions (item_id, version, data, actor, note) VALUES (:item_id, :version, "
            ":data, :actor, NULL)"
        ).bindparams(bindparam("data", type_=JSONB))
        self.event_stmt = text(
            "INSERT INTO cms_events (type, item_ids, payload) VALUES ('item.updated', :item_ids, :payload)"
        ).bindparams(bindparam("item_ids", type_=JSONB), bindparam("payload", type_=JSONB))
        self.audit_stmt = text(
            "INSERT INTO cms_audit (actor, ip, action, target, outcome, before, after) VALUES (:actor, :ip, "
            "'item.update', :target, 'ok', :before, :after)"
        ).bindparams(bindparam("before", type_=JSONB), bindparam("after", type_=JSONB))

    @staticmethod
    def _normalised(row: Any) -> dict[str, Any]:
        r = dict(row)
        r["tags"] = sorted(r["tags"] or ())
        return r

    async def get(self, conn: Any, item_id: int, *, lock: bool = False) -> dict[str, Any] | None:
        stmt = self.lock_stmt if lock else self.get_stmt
        row = (await conn.execute(stmt, {"id": item_id})).mappings().one_or_none()
        return None if row is None else self._normalised(row)

    async def update(
        self,
        conn: Any,
        before: dict[str, Any],
        fields: dict[str, Any],
        *,
        actor: str,
        ip: str | None,
    ) -> dict[str, Any]:
        """Change ``fields`` of the locked item ``before``: new version, revision, outbox event, audit row."""
        item_id = before["id"]
        sets = "".join(f"{name} = :{name}, " for name in fields)
        update = self.text(
            f"UPDATE cms_items SET {sets}version = version + 1, updated_at = now() WHERE id = :id "
            f"RETURNING {ITEM_COLUMNS}"
        )
        changed_row = (await conn.execute(update, {**fields, "id": item_id})).mappings().one()
        after = {**before, **changed_row}
        after_data, before_data = _data(after), _data(before)
        after_state = {**after_data, "status": after["status"], "version": after["version"]}
        changed = sorted(k for k in after_data if after_data[k] != before_data.get(k))
        await conn.execute(
            self.revision_stmt,
            {"item_id": item_id, "version": after["version"], "data": after_data, "actor": actor},
        )
        await conn.execute(
            self.event_stmt, {"item_ids": [item_id], "payload": {"item": after_state, "changed": changed}}
        )
        await conn.execute(
            self.audit_stmt,
            {
                "actor": actor,
                "ip": ip,
                "target": f"item:{item_id}",
                "before": _state(before),
                "after": after_state,
            },
        )
        return after


def lean_app(database_url: str, secret: str, *, pool_size: int, rate: str) -> FastAPI:
    import jwt

    from serve_apps.cms.limits import RateLimits, html_to_text, sanitize_html
    from serve_apps.cms.permissions import allowed_transitions, decide
    from storage.database import make_async_engine

    key = secret.encode()
    limits = RateLimits(per_key=rate, per_ip=rate)
    engine = make_async_engine(database_url, pool_size=pool_size)
    items = LeanItems()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(ApiFailure)
    async def failure(_: Request, exc: ApiFailure) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.code, exc.message, headers)

    def principal(authorization: str | None) -> tuple[int, str | None]:
        if authorization is None:  # anonymous: published items only, limited per address like the product
            if limits.check(None, "127.0.0.1") is not None:
                raise ApiFailure(429, "rate_limited", "rate limit reached")
            return 0, None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiFailure(401, "unauthorized", "Authorization: expected `Bearer <access token>`")
        try:
            claims = jwt.decode(
                token.strip(),
                key,
                algorithms=["HS256"],
                issuer="pulse-cms",
                options={"require": ["exp", "iat", "iss", "sub", "typ"]},
                leeway=5,
            )
        except jwt.InvalidTokenError as exc:
            raise ApiFailure(401, "unauthorized", f"access token invalid: {exc}") from exc
        if claims["typ"] != "access" or claims.get("role") not in ("admin", "editor", "author", "viewer"):
            raise ApiFailure(401, "unauthorized", "not an access token")
        user_id, role = int(claims["sub"]), str(claims["role"])
        if limits.check(f"user:{user_id}", None) is not None:
            raise ApiFailure(429, "rate_limited", "rate limit reached")
        return user_id, role

    def view(row: dict[str, Any], loc: str) -> s.LocaleView:
        body = row[f"body_{loc}"]
        return s.LocaleView(
            title=row[f"title_{loc}"],
            summary=row[f"summary_{loc}"],
            body=sanitize_html(body) if body else None,
            slug=row[f"slug_{loc}"],
        )

    def out(row: dict[str, Any], user_id: int, role: str | None) -> s.ItemOut:
        return s.ItemOut(
            id=row["id"],
            type=row["type"],
            status=row["status"],
            author_id=row["author_id"],
            category=row["category"],
            tags=row["tags"],
            en=view(row, "en"),
            ar=view(row, "ar"),
            featured_image_url=row["featured_image_url"],
            seo=row["seo"] or {},
            publish_at=row["publish_at"],
            unpublish_at=row["unpublish_at"],
            published_at=row["published_at"],
            version=row["version"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            allowed_transitions=allowed_transitions(role, row["status"], user_id == row["author_id"]),
        )

    @app.get("/v1/cms/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/cms/items/{item_id}", response_model=s.ItemOut)
    async def get_item(
        response: Response,
        item_id: Annotated[int, Path(ge=1)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        user_id, role = principal(authorization)
        async with engine.connect() as conn:
            item = await items.get(conn, item_id)
        if item is None:
            raise ApiFailure(404, "item_not_found", f"no item {item_id}")
        owner = user_id == item["author_id"]
        if not decide(role, "item.read", owner=owner, status=item["status"], item_id=item_id).allowed:
            raise ApiFailure(403, "forbidden", "may not read")
        response.headers["ETag"] = f'"{item["version"]}"'
        return out(item, user_id, role)

    @app.patch("/v1/cms/items/{item_id}", response_model=s.ItemOut)
    async def patch_item(
        request: Request,
        response: Response,
        item_id: Annotated[int, Path(ge=1)],
        body: s.ItemFields,
        authorization: Annotated[str | None, Header()] = None,
        if_match: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        user_id, role = principal(authorization)
        fields = body.model_dump(exclude_unset=True)
        unknown = set(fields) - set(LEAN_FIELDS)
        if unknown:
            raise ApiFailure(422, "invalid_request", f"the lean baseline does not change {sorted(unknown)}")
        for loc in ("en", "ar"):
            if f"body_{loc}" in fields:
                b = fields[f"body_{loc}"]
                fields[f"body_text_{loc}"] = html_to_text(b) if b else None
        expected = None
        if if_match is not None and if_match.strip() != "*":
            raw = if_match.strip().removeprefix("W/").strip('"')
            if not raw.isdigit():
                raise ApiFailure(422, "invalid_request", "If-Match: expected an ETag")
            expected = int(raw)
        async with engine.begin() as conn:
            before = await items.get(conn, item_id, lock=True)
            if before is None:
                raise ApiFailure(404, "item_not_found", f"no item {item_id}")
            owner = user_id == before["author_id"]
            decision = decide(role, "item.update", owner=owner, status=before["status"], item_id=item_id)
            if not decision.allowed:
                raise ApiFailure(403, "forbidden", decision.reason)
            if expected is not None and expected != before["version"]:
                raise ApiFailure(412, "stale_version", f"item {item_id} is at version {before['version']}")
            after = await items.update(
                conn,
                before,
                fields,
                actor=f"user:{user_id}",
                ip=request.client.host if request.client else None,
            )
        response.headers["ETag"] = f'"{after["version"]}"'
        return out(after, user_id, role)

    return app


def product_app(database_url: str, secret: str, *, pool_size: int, rate: str) -> FastAPI:
    """The product's FastAPI app without Serve (see the module docstring)."""
    from serve_apps.cms.app import build_api
    from serve_apps.cms.args import CmsArgs
    from serve_apps.cms.context import CmsContext

    args = CmsArgs(
        database_url=database_url,
        jwt_secret=secret,
        access_ttl_s=7200,
        rate_per_key=rate,
        rate_per_ip=rate,
        pool_size=pool_size,
        scheduler=False,
        embed_on_publish=False,
        admin_email=os.environ.get("PULSE_BENCH_ADMIN_EMAIL", "admin@pulse.bench"),
        admin_password=os.environ.get("PULSE_BENCH_ADMIN_PASSWORD"),
    )
    root = FastAPI()
    root.mount("/v1/cms", build_api(CmsContext(args)))
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impl", choices=["lean", "product"], default="lean")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=10, help="as CmsArgs.pool_size (default 10)")
    parser.add_argument("--rate", default="1000000/minute", help="rate limit per caller")
    parser.add_argument("--access-log", action="store_true", help="uvicorn access log on (default off)")
    args = parser.parse_args(argv)
    secret = os.environ["PULSE_BENCH_JWT_SECRET"]
    build = lean_app if args.impl == "lean" else product_app
    app = build(args.database_url, secret, pool_size=args.pool_size, rate=args.rate)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=args.access_log,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
