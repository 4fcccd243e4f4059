"""The OpenAI HTTP API of the serve stage: request schemas and error bodies.

Requests are validated strictly (no "5" for 5, unknown fields rejected, ranges
checked), so a bad request is a 400 whose OpenAI-style body names the field:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens",
               "code": null}}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


def _unicode(value: str) -> str:
    """JSON may carry lone surrogates ("\\ud800"); no tokenizer or reply can hold them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (a lone surrogate is not)") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # what torch.Generator takes


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(OpenAIModel):
    include_usage: bool = False


StopField = Annotated[Text | list[Text] | None, Field(default=None)]


class SamplingFields(OpenAIModel):
    """Fields shared by completions and chat completions (None: OpenAI's default)."""

    model: Text
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1)
    stop: StopField = None
    seed: Seed | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Accepted for client compatibility; only their neutral value is supported.
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: Text | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _only_neutral(cls, value: float | None) -> float | None:
        if value not in (None, 0, 0.0):
            raise ValueError("only 0 is supported by this server")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(SamplingFields):
    prompt: Text | list[Text] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=0)  # None: 16, as OpenAI's
    # vLLM's extension: end-of-text is not generated before this many tokens.
    min_tokens: int = Field(default=0, ge=0)
    logprobs: int | None = Field(default=None, ge=0)
    echo: bool = False
    best_of: int | None = Field(default=None, ge=1)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        if isinstance(value, list) and any(isinstance(p, list) and not p for p in value):
            raise ValueError("a token prompt must not be empty")
        return value

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix (insertion) is not supported by this server")
        return value


class ContentPart(OpenAIModel):
    type: Literal["text"]
    text: Text


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[ContentPart]
    name: Text | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    min_tokens: int = Field(default=0, ge=0)  # vLLM's extension, as for completions
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0)

    def plain_messages(self) -> list[dict[str, str]]:
        """Messages as {role, content} dicts; "developer" is OpenAI's new "system"."""
        return [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in self.messages
        ]


class TokenizeRequest(OpenAIModel):
    """POST /tokenize (vLLM's shape): text in, the served tokenizer's ids out."""

    prompt: Text
    add_special_tokens: bool = True
    model: Text | None = None


class DetokenizeRequest(OpenAIModel):
    tokens: list[Annotated[int, Field(ge=0)]]
    model: Text | None = None


class APIError(Exception):
    """An error answered with an OpenAI-style body (never a stack trace)."""

    def __init__(
        self,
        status_code: int,
        message: str,
        param: str | None = None,
        error_type: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.error_type = error_type
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)


def error_body(
    message: str,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


# Parts of a pydantic error location that name a union member, not a field:
# "str", "list[int]", "ContentPart", "function-after[...]".
_UNION_TAG = re.compile(r"(str|int|float|bool|none|[a-z-]+\[.*\]|[A-Z]\w*)")


def param_from_loc(loc: tuple[Any, ...]) -> str | None:
    """('body', 'messages', 0, 'role') -> 'messages[0].role'; ('body',) -> None."""
    param = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            param += f"[{part}]"
        elif not _UNION_TAG.fullmatch(part):
            param += f".{part}" if param else part
    return param or None


def validation_error(errors: list[dict[str, Any]]) -> APIError:
    """FastAPI/pydantic validation errors -> one 400 naming the first bad field."""
    if errors and errors[0].get("type") == "json_invalid":
        detail = (errors[0].get("ctx") or {}).get("error", "cannot be parsed")
        return APIError(400, f"The request body is not valid JSON: {detail}.")
    messages: dict[str | None, str] = {}
    for err in errors:
        param = param_from_loc(tuple(err.get("loc", ())))
        if param not in messages:  # a union reports every member; its first says enough
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            if err.get("type") == "missing":
                msg = "Field required"
            elif err.get("type") == "extra_forbidden":
                msg = "Unrecognized request argument"
            messages[param] = msg
    if not messages:
        return APIError(400, "Invalid request.")
    if None in messages and len(messages) == 1:
        return APIError(
            400,
            f"The request body must be a JSON object (Content-Type: application/json): "
            f"{messages[None]}.",
        )
    first = next(p for p in messages if p is not None)
    text = "; ".join(f"{p}: {m}" for p, m in messages.items() if p is not None)
    return APIError(400, f"Invalid request: {text}.", param=first)
