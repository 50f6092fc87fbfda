"""The one error hierarchy of toolrun.

Exceptions are for the app developer's mistakes and for failures the app must see. A tool that
fails while the model is writing never raises into the decoding loop: its failure becomes result
text the model reads (``→ error: ...``) and an entry in ``Generation.calls``.

    ToolrunError                    base of everything toolrun raises
    ├── ToolDefinitionError         a tool is defined wrongly (raised at decoration time)
    ├── ToolNotFoundError           ``tools=[...]`` names a tool nobody registered
    ├── ToolConfigError             a tool needs configuration it did not get (an API key, a corpus)
    ├── ModelLoadError              a model cannot be found, converted or loaded
    ├── GenerationOptionsError      ``generate()`` got options (or a prompt, messages, a chat
    │                               template) it cannot honour
    ├── PipelineError               bad input to the Toolformer pipeline (a missing, empty or
    │                               malformed corpus or annotation file), before any model loads
    ├── ToolError                   raised *inside* a tool to give the model a clean error message
    └── server.APIError             a request ``toolrun serve`` refuses (its HTTP status and the
                                    OpenAI error object); lives with the optional server

Parsing problems inside a call (``syntax.ArgumentSyntaxError``, malformed JSON in a chat call)
never reach the app: they become the call's error text.
"""

from __future__ import annotations

__all__ = [
    "GenerationOptionsError",
    "ModelLoadError",
    "PipelineError",
    "ToolConfigError",
    "ToolDefinitionError",
    "ToolError",
    "ToolNotFoundError",
    "ToolrunError",
]


class ToolrunError(Exception):
    """Base class of every exception toolrun raises."""


class ToolDefinitionError(ToolrunError, TypeError):
    """A function cannot become a tool: missing type hints, a bad name, a duplicate name."""


class ToolNotFoundError(ToolrunError, LookupError):
    """A tool was asked for by a name that no built-in, entry point or registry provides."""


class ToolConfigError(ToolrunError, ValueError):
    """A tool is missing configuration it needs before it can run (reported at registration)."""


class ModelLoadError(ToolrunError, OSError):
    """A model could not be located, converted or loaded."""


class GenerationOptionsError(ToolrunError, ValueError):
    """``generate()`` or ``stream()`` received an option that is unknown or out of range."""


class PipelineError(ToolrunError, ValueError):
    """Bad input to the Toolformer pipeline: a corpus or annotation file that is missing, empty
    or malformed, or options out of range. Raised before any model loads."""


class ToolError(ToolrunError):
    """Raise inside a tool to report a failure to the model as ``error: <message>``.

    Any other exception a tool raises is reported too, prefixed with its type name; this one
    gives the tool full control of the text the model reads.
    """
