"""The OpenAI wire format as pydantic models: requests are validated here, responses are built from these.

Only the fields Inkstone acts on are declared; unknown fields are ignored, as OpenAI-compatible servers do.
User messages may carry ``image_url`` parts (pictures, for a model that reads them).
Extensions: ``inkstone_session`` stores the exchange in an Inkstone session; ``top_k`` and
``repetition_penalty`` are accepted as vLLM accepts them.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextPart(BaseModel):
    """A text part of a multi-part message content."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    """``image_url`` of an image part: a ``data:`` URL (or ``http(s)`` where the server allows downloads)."""

    model_config = ConfigDict(extra="ignore")
    url: str
    detail: Literal["auto", "low", "high"] | None = None
    """Accepted and ignored: the model's processor decides the resolution."""


class ImagePart(BaseModel):
    """A picture in a user message (``core.api.images`` checks it: count, bytes, pixels, format)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(BaseModel):
    """A call's function: its name and the arguments as a JSON string (OpenAI's wire form)."""

    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: str = "{}"


class ToolCallParam(BaseModel):
    """A tool call of an earlier assistant message (or of a response)."""

    model_config = ConfigDict(extra="ignore")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDef(BaseModel):
    """A function the model may call (``tools[].function`` or a legacy ``functions`` entry)."""

    model_config = ConfigDict(extra="ignore")
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolParam(BaseModel):
    """One entry of ``tools``."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(BaseModel):
    """``{"name": ...}`` in a named tool choice or a legacy ``function_call``."""

    model_config = ConfigDict(extra="ignore")
    name: str


class NamedToolChoice(BaseModel):
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    """``response_format.json_schema``: the schema an answer must match."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """``response_format``: plain text, any JSON object, or JSON matching a schema."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatMessage(BaseModel):
    """A message of the conversation sent by the client (``tool`` results answer an assistant's ``tool_calls``;
    ``function`` is the legacy form of ``tool``)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = ""
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    function_call: FunctionCall | None = None

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content if isinstance(part, TextPart))
        return self.content or ""


class StreamOptions(BaseModel):
    """``stream_options``: Inkstone always sends the final usage chunk; ``include_usage`` is accepted."""

    model_config = ConfigDict(extra="ignore")
    include_usage: bool = True


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, ge=1, le=3)
    tools: list[ToolParam] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDef] | None = None
    """Legacy form of ``tools`` (answered with ``function_call``)."""
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    """Legacy form of ``tool_choice``."""
    response_format: ResponseFormat | None = None
    inkstone_session: str | None = None
    """Extension: ``"new"`` or an existing session id; the last user message and the answer are stored there."""

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops

    @property
    def stops(self) -> list[str]:
        """The stop strings as a list (empty when none)."""
        return list(self.stop or [])

    @property
    def answer_limit(self) -> int | None:
        """``max_completion_tokens`` or ``max_tokens`` (None: the server's default)."""
        return self.max_completion_tokens or self.max_tokens


class Usage(BaseModel):
    """Token counts of one completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    """The answer in a non-streamed response: text, or tool calls (``content`` then null)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallParam] | None = None
    function_call: FunctionCall | None = None


class Choice(BaseModel):
    """The one choice of a non-streamed response."""

    index: int = 0
    message: AssistantMessage
    finish_reason: str | None


class ChatCompletion(BaseModel):
    """A non-streamed ``chat.completion``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    inkstone_session: str | None = None


class Delta(BaseModel):
    """New text (and the role, in the first chunk) of a streamed answer."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None
    function_call: DeltaFunction | None = None


class DeltaFunction(BaseModel):
    """A piece of a streamed call's function: the name (first piece) and a piece of the arguments."""

    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    """A piece of a streamed tool call: ``index`` says which call; the first piece has the id, type and name."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class ChunkChoice(BaseModel):
    """The one choice of a stream chunk."""

    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One SSE ``chat.completion.chunk``; the last one has no choices and carries ``usage``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    inkstone_session: str | None = None


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``: the loaded model or a persona that fits it."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "inkstone"
    root: str | None = None
    """For a persona: the loaded model it runs on."""
    parent: str | None = None


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {...}}``, the shape of every error response."""

    error: ErrorBody


Delta.model_rebuild()
