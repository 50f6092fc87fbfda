"""Shared fixtures: the default model's tokenizer and a tiny random Llama built from a config."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def default_folder():
    """The default model converted to a plain folder (made once, then cached on disk)."""
    from toolrun.models import _resolve_folder

    return _resolve_folder(None)


@pytest.fixture(scope="session")
def tokenizer(default_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_folder)


@pytest.fixture(scope="session")
def tiny_llama(tokenizer):
    """A randomly initialised 2-layer Llama with the default model's vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return model
