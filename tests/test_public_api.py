"""The public API is exactly what __all__ says, and the error hierarchy has one root."""

import inspect

import toolrun
from toolrun import errors


def test_all_matches_what_is_exported():
    public = {name for name in vars(toolrun) if not name.startswith("_")}
    modules = {name for name, value in vars(toolrun).items() if inspect.ismodule(value)}
    assert sorted(public - modules) == sorted(set(toolrun.__all__) - {"__version__"})
    for name in toolrun.__all__:
        assert hasattr(toolrun, name), name


def test_every_error_derives_from_the_one_base():
    classes = [v for v in vars(errors).values() if inspect.isclass(v) and issubclass(v, Exception)]
    assert len(classes) >= 7
    for cls in classes:
        assert issubclass(cls, toolrun.ToolrunError)
        assert cls.__name__ in errors.__doc__
