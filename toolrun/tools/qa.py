"""QA: answers a question in a few words, with a language model used as a tool.

    [QA(What is the capital of France?) → Paris]

The answer comes from the model that is generating (``ctx.model``), asked with a short
answer-only prompt, tools disabled and a stop at the end of the line; or from a model you name.
The paper used a retrieval-augmented model (Atlas); ``search=`` grounds the answer the same way,
on passages from WikiSearch (or any function from a question to text).

``make_qa(model=..., search=...)`` builds a configured tool. The entry-point tool ``qa`` reads:

    TOOLRUN_QA_MODEL      a model for ``toolrun.load_model`` (default: the generating model)
    TOOLRUN_QA_GROUNDED   "1" to ground answers on the WikiSearch the environment configures
                          (see tools.wikisearch)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import toolrun

from . import wikisearch as _wikisearch
from ._lm import NO_CONTEXT, ModelChoice, ask, lazy_model, prepare_tool

__all__ = ["GROUNDED_ENV", "MODEL_ENV", "PROMPT", "make_qa", "qa"]

MODEL_ENV = "TOOLRUN_QA_MODEL"
GROUNDED_ENV = "TOOLRUN_QA_GROUNDED"
# Plain "Q:/A:": small instruct models asked in this form answer on the same line, while an
# instruction line before it makes SmolLM2-135M end its turn at once.
PROMPT = "{context}Q: {question}\nA:"
_CONTEXT_CHARS = 600
_ANSWER_CHARS = 120
_DESCRIPTION = "Answer a question in a few words."


# The paper's examples (Schick et al. 2023, appendix A.2), with results as this tool
# returns them: the annotator's prompt and the bracket format's preamble show them.
EXAMPLES = (
    'Joe Biden was born in [QA("Where was Joe Biden born?") → Scranton] Scranton, '
    '[QA("In which state is Scranton?") → Pennsylvania] Pennsylvania.',
    'Coca-Cola, or [QA("What other name is Coca-Cola known by?") → Coke] Coke, is a '
    'carbonated soft drink manufactured by [QA("Who manufactures Coca-Cola?") → '
    "The Coca-Cola Company] the Coca-Cola Company.",
)


def make_qa(
    model: ModelChoice = None,
    *,
    search: Callable[[str], str] | None = None,
    max_new_tokens: int = 24,
    timeout: float = 60.0,
) -> Callable[..., str]:
    """A QA tool. ``model``: None for the generating model, else a ``toolrun.Model`` or a source
    for ``toolrun.load_model`` (loaded on first use). ``search``: a WikiSearch tool (or any
    function from a question to passages) to ground the answer on; a search that fails leaves
    the question ungrounded.
    """
    own_model = lazy_model(model)

    def check() -> None:
        if search is not None:
            prepare_tool(search)

    @toolrun.tool(
        examples=EXAMPLES, name="QA", description=_DESCRIPTION, timeout=timeout, check=check
    )
    def qa(question: str, ctx: toolrun.ToolContext = NO_CONTEXT) -> str:
        question = " ".join(question.split())
        if not question:
            raise toolrun.ToolError("empty question")
        context = ""
        if search is not None:
            try:
                passages = search(question)
            except toolrun.ToolError:
                passages = ""  # no passages: answer from what the model knows
            if passages:
                context = f"Context: {' '.join(passages.split())[:_CONTEXT_CHARS]}\n"
        prompt = PROMPT.format(context=context, question=question)
        answer = ask(prompt, own_model=own_model, ctx=ctx, max_new_tokens=max_new_tokens)
        if not answer:
            raise toolrun.ToolError("the model gave no answer")
        return answer[:_ANSWER_CHARS]

    return qa


_from_env: tuple[tuple[str | None, ...], Callable[..., str]] | None = None
_env_lock = threading.Lock()


def _env_tool() -> Callable[..., str]:
    global _from_env
    settings = (os.environ.get(MODEL_ENV) or None, os.environ.get(GROUNDED_ENV) or None)
    with _env_lock:
        if _from_env is None or _from_env[0] != settings:
            model, grounded = settings
            if grounded not in (None, "0", "1"):
                raise toolrun.ToolConfigError(f"{GROUNDED_ENV} must be 0 or 1, not {grounded!r}")
            search = _wikisearch.wikisearch if grounded == "1" else None
            _from_env = (settings, make_qa(model, search=search))
        return _from_env[1]


def _check_env() -> None:
    prepare_tool(_env_tool())


@toolrun.tool(
    examples=EXAMPLES, name="QA", description=_DESCRIPTION, timeout=60.0, check=_check_env
)
def qa(question: str, ctx: toolrun.ToolContext = NO_CONTEXT) -> str:
    """Answer a question in a few words, with the generating model (or $TOOLRUN_QA_MODEL).

    Args:
        question: the question, e.g. What is the capital of France?
    """
    return _env_tool()(question, ctx)
