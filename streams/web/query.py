"""The query API on the web port: current open-window figures and the latest finals of a
subject or group, answered by any replica and routed to the one that owns the key."""

from __future__ import annotations

from typing import Any, Final

import faust
import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from agents.rolling import RollingEngine
from agents.rolling.records import insight_record
from models import format_utc, from_epoch_ms, utc_now
from streams.runtime.tables import Tables

__all__ = ["OPENAPI", "install_query_views"]

_INSIGHT_LIST: Final = {"type": "array", "items": {"$ref": "#/components/schemas/RollingInsight"}}
OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "observer-insights query API",
        "version": "1",
        "description": "Current insights of a subject or group, from whichever replica owns it.",
    },
    "paths": {
        f"/{kind}s/{{{kind}_id}}": {
            "get": {
                "summary": f"Open-window figures and latest finals of one {kind}",
                "parameters": [
                    {
                        "name": f"{kind}_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "metric",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the insights (lists are empty for an unknown key)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": [
                                        "scope",
                                        "key",
                                        "partition",
                                        "open",
                                        "latest_final",
                                    ],
                                    "properties": {
                                        "scope": {"enum": ["subject", "group"]},
                                        "key": {"type": "string"},
                                        "metric": {"type": ["string", "null"]},
                                        "partition": {"type": "integer"},
                                        "served_by": {"type": "string"},
                                        "watermark": {"type": ["string", "null"]},
                                        "open": _INSIGHT_LIST,
                                        "latest_final": _INSIGHT_LIST,
                                    },
                                }
                            }
                        },
                    },
                    "503": {"description": "the owner is rebalancing or unreachable; retry"},
                },
            }
        }
        for kind in ("subject", "group")
    },
    "components": {
        "schemas": {
            "RollingInsight": {
                "$ref": "https://observer-insights/schemas/insights.rolling.schema.json"
            }
        }
    },
}


def install_query_views(app: faust.App, engine: RollingEngine, tables: Tables) -> None:
    """`GET /subjects/{id}`, `GET /groups/{id}` (optional `?metric=`), `GET /openapi.json`."""
    table_name = tables.rolling_state.name

    async def answer(view: View, request: Request, scope: str, entity: str) -> Response:
        metric = request.query.get("metric") or None
        routing_key = (entity if scope == "subject" else f"group:{entity}").encode()
        try:
            return await app.router.route_req(table_name, routing_key, view.web, request)
        except SameNode:
            pass
        except ServiceUnavailable:
            return view.json({"error": "no replica owns this key right now; retry"}, status=503)
        partition, state = engine.query(scope, entity, metric)
        if state is None:
            return view.json({"error": "rebalancing: the key moved; retry"}, status=503)
        now = utc_now()
        current = [
            orjson.loads(insight_record(e, now)[1]) for e in state.current(scope, entity, metric)
        ]
        finals = [orjson.loads(record) for record in state.latest_finals(scope, entity, metric)]
        watermark = state.watermark
        return view.json(
            {
                "scope": scope,
                "key": entity,
                "metric": metric,
                "partition": partition,
                "served_by": str(app.conf.canonical_url),
                "watermark": format_utc(from_epoch_ms(watermark))
                if watermark is not None
                else None,
                "open": current,
                "latest_final": finals,
            }
        )

    @app.page("/subjects/{subject_id}")
    class SubjectInsights(View):
        async def get(self, request: Request, subject_id: str) -> Response:
            return await answer(self, request, "subject", subject_id)

    @app.page("/groups/{group_id}")
    class GroupInsights(View):
        async def get(self, request: Request, group_id: str) -> Response:
            return await answer(self, request, "group", group_id)

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            return self.json(OPENAPI)
