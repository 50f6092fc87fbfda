"""An action tool that needs approval: the app decides, call by call, before it runs.

    python examples/approval_tool.py          # the default model
    python examples/approval_tool.py --fake   # a scripted model that tries two emails

A tool marked ``requires_approval=True`` runs only when ``approve(name, arguments)`` says yes;
a refusal becomes text the model reads ("error: call to SendEmail was not approved").
"""

import sys

import toolrun
from toolrun.testing import ScriptedModel

OUTBOX: list[tuple[str, str]] = []


@toolrun.tool(name="SendEmail", requires_approval=True)
def send_email(to: str, subject: str) -> str:
    """Send an email (an action with effects: it needs approval).

    Args:
        to: the recipient's address
        subject: the subject line
    """
    OUTBOX.append((to, subject))
    return f"sent to {to}"


def approve(name: str, arguments: dict[str, object]) -> bool:
    """A policy: our own domain only. An interactive app might ask the user instead."""
    allowed = str(arguments.get("to", "")).endswith("@example.com")
    print(f"  approve {name}({arguments})? {'yes' if allowed else 'no'}")
    return allowed


def main(fake: bool) -> None:
    model = None
    if fake:
        model = ScriptedModel([
            " [SendEmail('team@example.com', 'Lunch at noon') →",
            " and [SendEmail('all@elsewhere.org', 'Lunch at noon') →",
            " done.",
        ])  # fmt: skip
    prompt = "Tell the team that lunch is at noon.\n"
    out = toolrun.generate(prompt, model=model, tools=[send_email], approve=approve)
    print(out.text)
    print("outbox:", OUTBOX)


if __name__ == "__main__":
    main("--fake" in sys.argv)
