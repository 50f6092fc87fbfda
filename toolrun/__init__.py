"""toolrun: a runtime that lets a language model call tools while it writes.

import toolrun

@toolrun.tool
def stock_price(symbol: str) -> float:
    '''Latest price of a stock.'''
    ...

out = toolrun.generate("...", tools=["calculator", stock_price])
out.text, out.calls

out = toolrun.chat([{"role": "user", "content": "..."}], model=..., tools=[stock_price])
out.messages                       # the new assistant and tool messages
"""

from .backends.base import Model, Session
from .batch import agenerate, astream, generate_batch
from .errors import (
    GenerationOptionsError,
    ModelLoadError,
    PipelineError,
    ToolConfigError,
    ToolDefinitionError,
    ToolError,
    ToolNotFoundError,
    ToolrunError,
)
from .formats import CallFormat
from .loop import chat, generate, stream
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
from .results import (
    CallFinished,
    CallStarted,
    ClientCall,
    Done,
    Event,
    Generation,
    TextDelta,
    ToolCall,
)
from .toolformer.pipeline import annotate, finetune

__version__ = "0.1.0"

__all__ = [
    "BASE_MODEL",
    "DEFAULT_MODEL",
    "CallFinished",
    "CallFormat",
    "CallOutcome",
    "CallPolicy",
    "CallStarted",
    "ClientCall",
    "Done",
    "Event",
    "Generation",
    "GenerationOptionsError",
    "Model",
    "ModelLoadError",
    "PipelineError",
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
    "annotate",
    "astream",
    "available_tools",
    "chat",
    "finetune",
    "generate",
    "generate_batch",
    "load_model",
    "stream",
    "tool",
]
