"""Offline search over your own documents: BM25, the index built once and cached on disk.

    python examples/offline_search.py [FOLDER_OR_JSONL] [--fake]

Without a folder it writes three small documents to a temporary one. The same search works for
any app as ``tools=["wikisearch"]`` with TOOLRUN_WIKI_CORPUS=FOLDER set.
"""

import sys
import tempfile
from pathlib import Path

import toolrun
from toolrun.testing import ScriptedModel
from toolrun.tools.wikisearch import make_wikisearch

SAMPLES = {
    "Ada_Lovelace.txt": "Ada Lovelace wrote the first published algorithm for a computing "
    "machine, Charles Babbage's Analytical Engine, in 1843.",
    "Grace_Hopper.txt": "Grace Hopper built the first compiler, A-0, in 1952.",
    "Alan_Turing.md": "Alan Turing described the Turing machine in 1936.",
}


def main(args: list[str]) -> None:
    fake = "--fake" in args
    paths = [a for a in args if not a.startswith("--")]
    if paths:
        corpus = Path(paths[0])
    else:
        corpus = Path(tempfile.mkdtemp(prefix="toolrun-docs-"))
        for name, text in SAMPLES.items():
            (corpus / name).write_text(text, encoding="utf-8")
    search = make_wikisearch(corpus, results=2)
    toolrun.ToolRegistry([search])  # registering builds (or loads) the index now
    print("direct:", search("first compiler"))

    model = ScriptedModel([" She [WikiSearch(first compiler) →", " so 1952."]) if fake else None
    prompt = "Q: When was the first compiler built?\nA:"
    out = toolrun.generate(prompt, model=model, tools=[search], max_new_tokens=120)
    print(out.text)


if __name__ == "__main__":
    main(sys.argv[1:])
