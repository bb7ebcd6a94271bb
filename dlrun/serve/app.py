"""The HTTP API (FastAPI routes; the OpenAPI page is at /docs, the schema at /openapi.json):

- POST /v1/models/{name}/predict, /v1/models/{name}/versions/{version}/predict: {"inputs": ...} -> predictions;
- GET /v1/models, /v1/models/{name}: names, versions, the default, each version's task, input spec and metrics;
- POST /v1/models/{name}/default {"version": v}: switch or roll back the default (null: back to the newest);
- POST /v1/admin/models {"run": DIR, "name": ..., "checkpoint": ...}: serve one more run (only with --admin);
- GET /health (200 once every model is loaded, else 503), GET /metrics (Prometheus text format).

Every error answers {"error": "one line"} with a 4xx (503 while loading), and the server goes on serving.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException

from dlrun.errors import DlrunError
from dlrun.serve.decode import decode_request, parse_json
from dlrun.serve.errors import ServeError
from dlrun.serve.metrics import CONTENT_TYPE, UNKNOWN
from dlrun.serve.service import Service, one_line

log = logging.getLogger("dlrun.serve")
DRAIN_BYTES = 16 * 2**20  # an oversized body up to this much more is read (and dropped) before the 413


class PredictBody(BaseModel):
    """A prediction request (documentation: the body is read and checked by dlrun/serve/decode.py)."""

    inputs: object = Field(description="one input or a list: numbers nested to the model's input shape, in the "
                           "data's units; base64 images for image models; {column: value} objects for models "
                           "trained on a CSV table; prompts for text models")
    top_k: int = Field(3, description="classes listed per prediction (classification)")
    length: int | None = Field(None, description="characters a text model writes after a prompt")


class DefaultBody(BaseModel):
    version: int | None = Field(description="the version to answer by default; null: the newest")


class AddBody(BaseModel):
    run: str = Field(description="a run folder on the server's machine")
    name: str | None = Field(None, description="the model name it is a version of (default: the model's name)")
    checkpoint: str | None = Field(None, description="best, last or a checkpoint file (default: serve's --checkpoint)")


def body_doc(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def error(exc: ServeError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


def create_app(service: Service) -> FastAPI:
    models, metrics, settings = service.models, service.metrics, service.settings

    @asynccontextmanager
    async def lifespan(_app):
        await service.start()
        yield
        await service.close()

    app = FastAPI(title="dlrun serve", lifespan=lifespan, description=__doc__)

    @app.exception_handler(ServeError)
    async def _serve_error(_request, exc: ServeError):
        return error(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(_request, exc: HTTPException):
        return JSONResponse({"error": f"{exc.detail}"}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    async def body(request: Request, model: type[BaseModel] | None = None):
        """The JSON body (413 over --max-body-mb, 400 when malformed), validated by `model` if given (422)."""
        limit = settings.max_body_bytes
        length = request.headers.get("content-length", "")
        too_big = ServeError(413, "too_large", f"the body is over {limit} bytes (dlrun serve --max-body-mb).")
        if length.isdigit() and int(length) > limit + DRAIN_BYTES:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():  # a body a little over the limit is read to its end (and dropped), so
            size += len(chunk)                # that a client still sending it reads the 413, not a broken pipe
            if size <= limit:
                chunks.append(chunk)
            elif size > limit + DRAIN_BYTES:
                break
        if size > limit:
            raise too_big
        payload = parse_json(b"".join(chunks))
        if model is None:
            return payload
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise ServeError(422, "json", f"{where}: {first['msg']}") from None

    async def predict(request: Request, name: str, version: str | None):
        start = time.perf_counter()
        service.accepted += 1
        labels = (UNKNOWN, UNKNOWN)
        try:
            served = models.get(name, version)
            labels = served.labels
            inputs = decode_request(await body(request), served.predictor)
            predictions = await served.predict(inputs)
        except ServeError as exc:
            metrics.errors.labels(*labels, exc.kind).inc()
            metrics.requests.labels(*labels, str(exc.status)).inc()
            service.answered += 1
            return error(exc)
        except Exception as exc:  # noqa: BLE001 - a bug: this request fails, the server goes on
            log.exception("a prediction request failed")
            metrics.errors.labels(*labels, "internal").inc()
            metrics.requests.labels(*labels, "500").inc()
            service.answered += 1
            return JSONResponse({"error": f"internal error: {one_line(exc)}"}, 500)
        metrics.latency.labels(*labels).observe(time.perf_counter() - start)
        metrics.requests.labels(*labels, "200").inc()
        metrics.inputs.labels(*labels).inc(inputs.size)
        service.answered += 1
        return JSONResponse({"model": served.name, "version": served.number, "predictions": predictions})

    responses = {400: {"description": "malformed JSON"}, 404: {"description": "unknown model or version"},
                 413: {"description": "body over --max-body-mb"},
                 422: {"description": "inputs that do not fit the model (shape, dtype, NaN, empty, bad image)"},
                 503: {"description": "the models are still loading"}}

    @app.post("/v1/models/{name}/predict", openapi_extra=body_doc(PredictBody), responses=responses,
              summary="Predict with the default version")
    async def predict_default(name: str, request: Request):
        return await predict(request, name, None)

    @app.post("/v1/models/{name}/versions/{version}/predict", openapi_extra=body_doc(PredictBody),
              responses=responses, summary="Predict with one version")
    async def predict_version(name: str, version: str, request: Request):
        return await predict(request, name, version)

    @app.get("/v1/models", summary="The served models, versions, defaults, input specs and metrics")
    async def list_models():
        return {"models": models.describe(), "ready": service.ready}

    @app.get("/v1/models/{name}", summary="One model's versions")
    async def one_model(name: str):
        models.get(name)
        return next(m for m in models.describe() if m["name"] == name)

    @app.post("/v1/models/{name}/default", openapi_extra=body_doc(DefaultBody),
              summary="Switch or roll back the default version, without a restart")
    async def set_default(name: str, request: Request):
        wanted = await body(request, DefaultBody)
        served = models.pin(name, wanted.version)
        return {"name": name, "default": served.number, "pinned": wanted.version is not None}

    @app.post("/v1/admin/models", openapi_extra=body_doc(AddBody), status_code=201,
              summary="Serve one more run folder (only with dlrun serve --admin)")
    async def add_model(request: Request):
        if not settings.admin:
            raise ServeError(403, "admin", "the admin endpoints are off; start dlrun serve with --admin.")
        wanted = await body(request, AddBody)
        try:
            served = await service.add(Path(wanted.run), wanted.name, wanted.checkpoint)
        except DlrunError as exc:
            raise ServeError(422, "run", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a run this dlrun cannot build: refused, the server goes on
            log.exception("a run could not be loaded")
            raise ServeError(422, "run", f"{wanted.run} cannot be served: {one_line(exc)}") from None
        service.say(f"added {served.name} version {served.number}: {served.run}")
        return {"name": served.name, "version": served.number, "default": served.is_default}

    @app.get("/health", summary="200 once every model is loaded; 503 while loading")
    async def health():
        if service.ready:
            return {"status": "ready", "models": {n: models.default_number(n) for n in models.names()}}
        status = "failed" if service.failure else "loading"
        return JSONResponse({"status": status, "loaded": len(models.versions()), "runs": len(service.runs)}, 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app
