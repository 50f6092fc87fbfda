"""Prefix reuse: the cache's bookkeeping, logits parity after starting from a cached prefix, and a
follow-up chat request that skips the prefill of what it shares with the earlier one."""

from __future__ import annotations

import openai
import pytest
import torch

from toolrun.backends.transformers import TransformersModel
from toolrun.server import ServerSettings, create_app
from toolrun.server.prefix_cache import PrefixCache, PrefixReuseBatch, ReusableTransformersBatch
from toolrun.server.testing import LiveServer


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tiny_llama, tokenizer):
    return TransformersModel(tiny_llama, tokenizer)


def test_lookup_finds_the_longest_shared_prefix_and_leaves_a_token_to_feed():
    cache = PrefixCache(10_000, min_tokens=3)
    cache.add(list(range(10)), "ten", 100)
    cache.add([0, 1, 2, 3, 99, 98], "diverges", 100)
    assert cache.lookup(list(range(20))) == ("ten", 10)
    assert cache.lookup([0, 1, 2, 3, 99, 98, 7]) == ("diverges", 6)
    assert cache.lookup(list(range(10))) == ("ten", 9)  # the last token is fed for its logits
    assert cache.lookup([0, 1, 5]) is None  # under min_tokens
    assert cache.lookup([7, 8, 9, 10]) is None
    assert (cache.hits, cache.misses, cache.reused_tokens) == (3, 2, 25)


def test_entries_are_bounded_in_bytes_least_recently_used_first():
    cache = PrefixCache(250, min_tokens=1)
    cache.add([1, 1], "a", 100)
    cache.add([2, 2], "b", 100)
    cache.lookup([1, 1, 5])  # "a" is now the most recent
    cache.add([3, 3], "c", 100)
    assert [e.snapshot for e in cache.entries.values()] == ["a", "c"]
    assert cache.bytes == 200
    cache.add([4], "too big", 300)
    assert cache.bytes == 200 and len(cache.entries) == 2


def test_a_longer_sequence_replaces_the_prefix_it_extends():
    cache = PrefixCache(10_000, min_tokens=1)
    cache.add([1, 2, 3], "short", 10)
    cache.add([1, 2, 3, 4, 5], "long", 10)
    assert [e.snapshot for e in cache.entries.values()] == ["long"]
    assert cache.bytes == 10


def test_a_row_started_from_a_snapshot_has_the_logits_of_a_full_prefill(model):
    inner = ReusableTransformersBatch(model)
    cache = PrefixCache(1 << 30, min_tokens=4)
    batch = PrefixReuseBatch(inner, cache)
    first = list(range(100, 140))
    batch.step({"a": first, "other": list(range(300, 310))})
    batch.step({"a": [7, 8, 9], "other": [11]})
    batch.remove(["a"])  # kept: 43 tokens
    assert cache.bytes > 0 and "a" not in inner.index

    follow_up = [*first, 7, 8, 9, 21, 22, 23]  # extends a's sequence
    branch = [*first[:20], 55, 56]  # shares only the first 20 tokens
    logits = batch.step({"b": follow_up, "c": branch, "other": [12]})
    assert cache.reused_tokens == 43 + 20
    for key, ids in (("b", follow_up), ("c", branch)):
        alone = model.new_session().feed(ids)
        assert float((logits[key] - alone).abs().max()) < 1e-4
    # the rows go on decoding together as any others
    logits = batch.step({"b": [5], "c": [6], "other": [13]})
    for key, ids in (("b", [*follow_up, 5]), ("c", [*branch, 6])):
        assert float((logits[key] - model.new_session().feed(ids)).abs().max()) < 1e-4
    other = [*range(300, 310), 11, 12, 13]
    assert float((logits["other"] - model.new_session().feed(other)).abs().max()) < 1e-4


def test_a_chat_follow_up_reuses_the_earlier_sequence(model):
    messages = [
        {"role": "system", "content": "You are a helpful assistant. " * 8},
        {"role": "user", "content": "Tell me about the sea."},
    ]

    def conversation(settings: ServerSettings) -> tuple[list[str], object]:
        app = create_app(model, settings=settings)
        with LiveServer(app) as live:
            api = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
            first = api.chat.completions.create(model=model.name, messages=messages, max_tokens=8)
            reply = first.choices[0].message.content
            follow = [
                *messages,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": "And the mountains?"},
            ]
            second = api.chat.completions.create(model=model.name, messages=follow, max_tokens=8)
        return [reply, second.choices[0].message.content], app.state.engine.prefix_cache

    reused, cache = conversation(ServerSettings())
    cold, off = conversation(ServerSettings(prefix_cache_bytes=0))
    assert off is None
    assert reused == cold  # the same greedy text with and without reuse
    assert cache.hits == 1 and cache.reused_tokens > 60  # at least the whole first prompt
