"""The floor: bare Starlette + orjson calling the identity function, inline or in Starlette's thread pool.

Usage: python floor.py inline|threadpool PORT
"""

from __future__ import annotations

import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def pre_processing(data):
    return data


def build(mode: str) -> Starlette:
    inline = mode == "inline"

    async def single(request: Request) -> Response:
        data = orjson.loads(await request.body())["data"]
        result = pre_processing(data) if inline else await run_in_threadpool(pre_processing, data)
        return Response(orjson.dumps({"result": result}), media_type="application/json")

    def each(records: list) -> list:
        return [pre_processing(record) for record in records]

    async def batch(request: Request) -> Response:
        records = orjson.loads(await request.body())["data"]
        results = each(records) if inline else await run_in_threadpool(each, records)
        return Response(orjson.dumps({"results": results, "errors": []}), media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/preprocess", single, methods=["POST"]),
            Route("/preprocess/batch", batch, methods=["POST"]),
            Route("/health", health),
        ]
    )


if __name__ == "__main__":
    uvicorn.run(build(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), access_log=False, log_level="warning")
