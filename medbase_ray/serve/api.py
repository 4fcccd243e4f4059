"""The OpenAI-compatible FastAPI app, over any backend that decodes `SequenceJob`s.

No Ray here: `create_api(backend, served, cfg)` is the whole HTTP surface. The Serve
replica (`app.py`) passes itself as the backend (its `generate` goes through
`@serve.batch`); `handlers.InProcessBackend` decodes each job alone, for tools and tests.

    GET  /health                 liveness (no key needed)
    GET  /v1/models              the one served model
    POST /v1/completions         prompt (str, [str], [int], [[int]]), echo, logprobs, stream
    POST /v1/chat/completions    messages in the model's chat format, stream
    GET  /tokenizer_info         special tokens, chat template, context (vLLM's; lm-eval
    POST /tokenize               reads these three to tokenize with the served model's
    POST /detokenize             own tokenizer: `tokenizer_backend=remote`)

Every error is an OpenAI-style body (`protocol.error_body`); bad input is a 4xx naming
the field, and nothing a client sends makes a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from medbase_ray.serve.config import ServeConfig
from medbase_ray.serve.handlers import Backend, OpenAIRequestHandler, ServedModel
from medbase_ray.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    error_body,
    validation_error,
)

log = logging.getLogger(__name__)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_authorized(header: str | None, api_key_sha256: str) -> bool:
    """Compares digests in constant time; the key itself is never kept."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(sha256_hex(token.strip()), api_key_sha256)


def create_api(
    backend: Backend,
    served: ServedModel,
    cfg: ServeConfig,
    api_key_sha256: str | None = None,
) -> FastAPI:
    """The FastAPI app; with `api_key_sha256`, every route but /health needs the key."""
    app = FastAPI(
        title="medbase-ray OpenAI-compatible API",
        docs_url=None,
        redoc_url=None,
        strict_content_type=False,  # a body without Content-Type is parsed as JSON too
    )
    handler = OpenAIRequestHandler(backend, served, cfg)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """The key before anything else (even the body); no stack trace to a client."""
        path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
        header = request.headers.get("authorization")
        if api_key_sha256 and path != "/health" and not is_authorized(header, api_key_sha256):
            body = error_body(
                "Missing or incorrect API key: send 'Authorization: Bearer <key>'.",
                "invalid_request_error",
                code="invalid_api_key",
            )
            return JSONResponse(body, status_code=401)
        try:
            return await call_next(request)
        except Exception:  # a bug or a failed decode, not bad input (that is a 4xx above)
            log.exception("request failed")
            return JSONResponse(error_body("Internal server error.", "server_error"), 500)

    @app.exception_handler(APIError)
    async def on_api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(list(exc.errors()))
        return JSONResponse(err.body(), status_code=err.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": served.model_id}

    @app.get("/v1/models")
    async def models() -> dict:
        card = {"id": served.model_id, "object": "model", "created": served.created}
        return {"object": "list", "data": [card | {"owned_by": "medbase-ray"}]}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        return await handler.completions(req)

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest):
        return await handler.chat(req)

    @app.get("/tokenizer_info")
    async def tokenizer_info() -> dict:
        return handler.tokenizer_info()

    @app.post("/tokenize")
    async def tokenize(req: TokenizeRequest) -> dict:
        return handler.tokenize(req)

    @app.post("/detokenize")
    async def detokenize(req: DetokenizeRequest) -> dict:
        return handler.detokenize(req)

    return app
