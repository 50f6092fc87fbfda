"""``toolrun serve``: an OpenAI-compatible server whose tools run mid-generation.

    from toolrun.server import create_app, ServerSettings

Needs the ``serve`` extra (``pip install 'toolrun[serve]'``): FastAPI and uvicorn. This package
imports them only when ``create_app`` is first used, so ``toolrun --help`` works without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ServerSettings

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        require_extra()
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def require_extra() -> None:
    """Raise one clear error when FastAPI or uvicorn is missing."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        from ..errors import ToolrunError

        raise ToolrunError(
            f"the server needs {' and '.join(missing)}: pip install 'toolrun[serve]'"
        )
