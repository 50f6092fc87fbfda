"""toolrun's built-in tools, registered through the public ``@toolrun.tool`` decorator.

Each module offers the entry-point tool (configured from the environment) and a factory for a
configured one:

    Calculator  toolrun.tools.calculator.calculator         (and evaluate(text) -> float)
    Calendar  toolrun.tools.calendar_tool.calendar        make_calendar(clock=, tz=)
    WikiSearch  toolrun.tools.wikisearch.wikisearch         make_wikisearch(corpus=, backend=, ...)
    QA  toolrun.tools.qa.qa                         make_qa(model=, search=)
    MT  toolrun.tools.mt.mt                         make_mt(url=, model=, allowed_hosts=, ...)
    WolframAlpha  toolrun.tools.wolframalpha.wolframalpha     make_wolframalpha(app_id=, ...)

``HttpSettings`` sets the networked tools' limits (timeouts, size cap, retries).
"""

from ._http import HttpSettings

__all__ = ["HttpSettings"]
