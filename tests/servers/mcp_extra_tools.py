"""A tool file for ``toolrun mcp-serve --tools tests/servers/mcp_extra_tools.py:shout``."""

import toolrun


@toolrun.tool
def shout(text: str, times: int = 1) -> str:
    """Upper-case text, repeated.

    Args:
        text: what to shout
        times: how many times
    """
    return " ".join([text.upper()] * times)
