"""Tool definitions: typed objects built from functions, and the ``@tool`` decorator.

A tool is a plain function with type hints. ``@tool`` (bare, or with options) reads its name, its
docstring and its signature, builds a pydantic model of the arguments, attaches the resulting
``Tool`` to the function and returns the function unchanged. Definition problems raise one
ToolDefinitionError at decoration time, listing all of them.
"""

from __future__ import annotations

import inspect
import math
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import pydantic

from .errors import ToolDefinitionError
from .syntax import ArgumentSyntaxError, parse_arguments

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RESULT_CHARS",
    "DEFAULT_TIMEOUT_S",
    "Tool",
    "ToolContext",
    "tool",
]

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_RESULT_CHARS = 300
# Calls of one tool that may run at once; more wait for a slot (not charged to their deadline).
DEFAULT_MAX_CONCURRENCY = 8
TOOL_ATTRIBUTE = "__toolrun_tool__"
_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class ToolContext:
    """Given to a tool that has a parameter annotated ``ToolContext``; the model never sees it.

    ``model`` is the model that is generating (a tool such as QA can ask it a question), or None
    when the tool runs outside a generation.
    """

    model: Any = None
    tool_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tool:
    """A callable the model can use, with its validated signature. Build one with ``@tool``."""

    name: str
    description: str
    function: Callable[..., Any]
    arguments_model: type[pydantic.BaseModel]
    parameter_help: dict[str, str]
    timeout: float | None = DEFAULT_TIMEOUT_S
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    requires_approval: bool = False
    context_parameter: str | None = None
    check: Callable[[], None] | None = None
    max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY
    """Calls that may run at once (None: no limit). A call past its deadline keeps its slot until
    the function really returns, so a tool that hangs holds at most this many threads."""
    examples: tuple[str, ...] = ()
    """A few texts with the call written in (``... [Name(args) → result] ...``), the paper's way:
    the annotator's prompt and the toolformer preamble show them to the model."""

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    @property
    def parameters(self) -> list[str]:
        """The parameters the model fills, in order."""
        return list(self.arguments_model.model_fields)

    @property
    def raw_text(self) -> bool:
        """A tool with one ``str`` parameter receives the text between the parentheses as is."""
        fields = self.arguments_model.model_fields
        return len(fields) == 1 and next(iter(fields.values())).annotation is str

    @property
    def signature(self) -> str:
        """``Name(param: type, other: type = default)``, as ``toolrun tools`` lists it."""
        parts = []
        for name, info in self.arguments_model.model_fields.items():
            annotation = _type_name(info.annotation)
            default = "" if info.is_required() else f" = {info.default!r}"
            parts.append(f"{name}: {annotation}{default}")
        return f"{self.name}({', '.join(parts)})"

    def json_schema(self) -> dict[str, Any]:
        """The OpenAI function schema: ``{"type": "function", "function": {name, description,
        parameters}}``, parameters as JSON Schema from the signature and the docstring."""
        parameters = self.arguments_model.model_json_schema()
        parameters.pop("title", None)
        for prop in parameters.get("properties", {}).values():
            prop.pop("title", None)
        parameters.setdefault("properties", {})
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters,
            },
        }

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
        requires_approval: bool = False,
        check: Callable[[], None] | None = None,
        examples: Sequence[str] = (),
        max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
    ) -> Tool:
        """Build a Tool from a typed function, raising ToolDefinitionError with every problem."""
        problems: list[str] = []
        if not callable(function):
            raise ToolDefinitionError(f"a tool must be a function, got {function!r}")
        label = getattr(function, "__qualname__", repr(function))
        tool_name = name if name is not None else getattr(function, "__name__", "")
        if tool_name == "<lambda>":
            problems.append("a lambda has no name: pass name=... to @tool")
        elif not _NAME_PATTERN.match(tool_name or ""):
            problems.append(f"tool name {tool_name!r} must be an identifier (letters, digits, _)")
        if timeout is not None and not (
            isinstance(timeout, (int, float))
            and not isinstance(timeout, bool)
            and math.isfinite(timeout)
            and timeout > 0
        ):
            problems.append(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not _is_int(max_result_chars) or max_result_chars < 1:
            problems.append(f"max_result_chars must be at least 1, got {max_result_chars!r}")
        if max_concurrency is not None and (not _is_int(max_concurrency) or max_concurrency < 1):
            problems.append(f"max_concurrency must be at least 1 or None, got {max_concurrency!r}")
        if isinstance(examples, str) or not all(isinstance(e, str) and e for e in examples):
            problems.append("examples must be a list of non-empty texts")

        doc_description, parameter_help = _parse_docstring(inspect.getdoc(function) or "")
        try:
            hints = typing.get_type_hints(function)
        except Exception as exc:  # unresolvable forward references
            problems.append(f"cannot resolve type hints: {exc}")
            hints = {}
        fields: dict[str, Any] = {}
        context_parameter = None
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                problems.append(
                    f"parameter {parameter.name!r}: *args and **kwargs are not supported"
                )
                continue
            annotation = hints.get(parameter.name, inspect.Parameter.empty)
            if annotation is inspect.Parameter.empty:
                problems.append(f"parameter {parameter.name!r} has no type hint")
                continue
            if annotation is ToolContext:
                context_parameter = parameter.name
                continue
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[parameter.name] = (
                annotation,
                pydantic.Field(default, description=parameter_help.get(parameter.name)),
            )
        arguments_model: type[pydantic.BaseModel] = pydantic.BaseModel
        if not problems:
            try:
                arguments_model = pydantic.create_model(
                    f"{tool_name}Arguments",
                    __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                    **fields,
                )
            except Exception as exc:  # pydantic cannot build a schema for some annotation
                problems.append(f"unsupported parameter types: {exc}")
        if problems:
            raise ToolDefinitionError(
                f"cannot make a tool of {label}:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        return cls(
            name=tool_name,
            description=(description if description is not None else doc_description).strip(),
            function=function,
            arguments_model=arguments_model,
            parameter_help=parameter_help,
            timeout=timeout,
            max_result_chars=max_result_chars,
            requires_approval=requires_approval,
            context_parameter=context_parameter,
            check=check,
            examples=tuple(examples),
            max_concurrency=max_concurrency,
        )

    def bind(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Validate a call's arguments into keyword arguments for the function.

        ``arguments`` is either the text between the parentheses of a bracket call (parsed with
        ``ast``) or a mapping already parsed from JSON (the chat formats' calls). Raises
        ArgumentSyntaxError or pydantic.ValidationError; the registry turns both into text.
        """
        if not isinstance(arguments, str):
            if not isinstance(arguments, Mapping):
                raise ArgumentSyntaxError(
                    f"arguments must be an object, got {type(arguments).__name__}"
                )
            return self.arguments_model.model_validate(dict(arguments)).model_dump()
        return self.arguments_model.model_validate(self.keywords_from_text(arguments)).model_dump()

    def keywords_from_text(self, text: str) -> dict[str, Any]:
        """A bracket call's argument text as keyword arguments, not yet validated: positional
        ones in parameter order; a tool with one ``str`` parameter takes the text as it is."""
        names = self.parameters
        if self.raw_text:
            value: Any = text
            try:
                args, kwargs = parse_arguments(text)
                if not kwargs and len(args) == 1 and isinstance(args[0], str):
                    value = args[0]  # a single quoted literal is unquoted
            except ArgumentSyntaxError:
                pass
            return {names[0]: value}
        args, kwargs = parse_arguments(text)
        if len(args) > len(names):
            raise ArgumentSyntaxError(
                f"{self.name} takes {len(names)} argument(s), {len(args)} given"
            )
        for position, value in enumerate(args):
            if names[position] in kwargs:
                raise ArgumentSyntaxError(f"argument {names[position]!r} given twice")
            kwargs[names[position]] = value
        return kwargs

    def _call_args(self, arguments: dict[str, Any], context: ToolContext | None) -> dict[str, Any]:
        if self.context_parameter is None:
            return arguments
        return {**arguments, self.context_parameter: context or ToolContext(tool_name=self.name)}


@overload
def tool(function: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    requires_approval: bool = False,
    check: Callable[[], None] | None = None,
    examples: Sequence[str] = (),
    max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
) -> Callable[[F], F]: ...
def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    requires_approval: bool = False,
    check: Callable[[], None] | None = None,
    examples: Sequence[str] = (),
    max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
) -> Any:
    """Make a function a tool. Use bare (``@tool``) or with options (``@tool(name="QA")``).

    The function is returned unchanged (it stays callable as before); the Tool built from it is
    attached and found by ``tools=[function]``. ``check`` runs when the tool is registered for a
    generation and raises ToolConfigError if configuration is missing. ``examples``: a few texts
    with the call written in, ``"... [Name(args) → result] ..."``, for the annotator's prompt and
    the toolformer preamble. ``max_concurrency``: calls that may run at once (more wait for a
    slot; a tool whose slots are all held by hung calls answers "saturated" at once).
    """

    def decorate(target: F) -> F:
        built = Tool.from_function(
            target,
            name=name,
            description=description,
            timeout=timeout,
            max_result_chars=max_result_chars,
            requires_approval=requires_approval,
            check=check,
            examples=examples,
            max_concurrency=max_concurrency,
        )
        setattr(target, TOOL_ATTRIBUTE, built)
        return target

    if function is not None:
        return decorate(function)
    return decorate


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


_GOOGLE_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$"
)


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into the description and per-argument help."""
    description: list[str] = []
    help_by_name: dict[str, str] = {}
    section = None
    current = None
    for line in doc.splitlines():
        header = _GOOGLE_SECTION.match(line.strip())
        if header and not line.startswith((" ", "\t")):
            section = header.group(1)
            current = None
            continue
        if section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters") and line.strip():
            item = re.match(r"\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)", line)
            indent = len(line) - len(line.lstrip())
            if item and (current is None or indent <= 4):
                current = item.group(1).lstrip("*")
                help_by_name[current] = item.group(3).strip()
            elif current is not None:
                help_by_name[current] = f"{help_by_name[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), help_by_name
