"""OpenAI chat completions as an Avaluma ``llm`` provider named ``openai`` (default model ``gpt-4.1-mini``).

Config::

    agent:
      llm: {name: openai, options: {model: gpt-4.1-mini, temperature: 0.7}}

The key comes from ``OPENAI_API_KEY``. Any OpenAI-compatible server works too: set ``base_url`` and, if it uses
another variable for its key, ``api_key_env`` (the *name* of the variable, never the key itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from avaluma.agent.secrets import require_env
from avaluma.core.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from livekit.agents import llm

DEFAULT_MODEL = "gpt-4.1-mini"


class Options(BaseModel):
    """Options of the ``openai`` LLM provider (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = DEFAULT_MODEL
    temperature: float | None = Field(None, ge=0, le=2)
    max_completion_tokens: int | None = Field(None, ge=1)
    parallel_tool_calls: bool | None = None
    #: An OpenAI-compatible endpoint (e.g. a local server); unset = api.openai.com.
    base_url: str | None = None
    #: Name of the environment variable holding the key.
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


def make_llm(options: Options) -> llm.LLM:
    """Build LiveKit's OpenAI LLM from ``options``; the key is read from the environment."""
    api_key = require_env(options.api_key_env, kind="llm")
    from livekit.plugins import openai  # heavy: only when this provider is picked

    optional: dict[str, Any] = {
        k: v
        for k, v in options.model_dump(
            include={"temperature", "max_completion_tokens", "parallel_tool_calls", "base_url"}
        ).items()
        if v is not None
    }
    return openai.LLM(model=options.model, api_key=api_key, **optional)


@hookimpl
def register_llm(register: Register) -> None:
    register("openai", make_llm, options=Options, description="OpenAI chat LLM, gpt-4.1-mini by default (cloud)")
