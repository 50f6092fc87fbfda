"""toolrun: a runtime that lets a language model call tools while it writes.

import toolrun

@toolrun.tool
def stock_price(symbol: str) -> float:
    '''Latest price of a stock.'''
    ...

out = toolrun.generate("...", tools=["calculator", stock_price])
out.text, out.calls
"""

from .backends.base import Model, Session
from .batch import agenerate, generate_batch
from .errors import (
    GenerationOptionsError,
    ModelLoadError,
    ToolConfigError,
    ToolDefinitionError,
    ToolError,
    ToolNotFoundError,
    ToolrunError,
)
from .loop import generate, stream
from .models import BASE_MODEL, DEFAULT_MODEL, load_model
from .registry import (
    CallOutcome,
    CallPolicy,
    Tool,
    ToolContext,
    ToolRegistry,
    available_tools,
    tool,
)
from .results import CallFinished, CallStarted, Done, Event, Generation, TextDelta, ToolCall

__version__ = "0.1.0"

__all__ = [
    "BASE_MODEL",
    "DEFAULT_MODEL",
    "CallFinished",
    "CallOutcome",
    "CallPolicy",
    "CallStarted",
    "Done",
    "Event",
    "Generation",
    "GenerationOptionsError",
    "Model",
    "ModelLoadError",
    "Session",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolConfigError",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolNotFoundError",
    "ToolRegistry",
    "ToolrunError",
    "__version__",
    "agenerate",
    "available_tools",
    "generate",
    "generate_batch",
    "load_model",
    "stream",
    "tool",
]
