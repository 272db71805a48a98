"""Token windows, the text recipe and document pooling: pure logic, no Ray, no database."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from jobs.embed.chunking import TokenTemplate, chunk_document, pool_documents, spans, token_template
from jobs.embed.pipeline import EmbedJobConfig, plan_pools
from jobs.embed.recipe import TextRecipe
from jobs.errors import RecipeError


def test_spans_cover_the_text_with_overlap_and_a_full_last_window() -> None:
    assert spans(0, size=10, overlap=2, max_chunks=5) == []
    assert spans(7, size=10, overlap=2, max_chunks=5) == [(0, 7)]
    assert spans(10, size=10, overlap=2, max_chunks=5) == [(0, 10)]
    # 25 tokens, windows of 10 sharing 2: the last one ends at the end and stays 10 long.
    assert spans(25, size=10, overlap=2, max_chunks=5) == [(0, 10), (8, 18), (15, 25)]
    assert spans(1000, size=10, overlap=2, max_chunks=3) == [(0, 10), (8, 18), (16, 26)]
    for n in range(1, 60):
        windows = spans(n, size=10, overlap=3, max_chunks=100)
        covered = set().union(*(range(s, e) for s, e in windows))
        assert covered == set(range(n)) and all(e - s <= 10 for s, e in windows)
        assert all(b[0] < a[1] for a, b in pairwise(windows))
    with pytest.raises(ValueError):
        spans(5, size=4, overlap=4, max_chunks=2)


def test_chunks_carry_the_template_and_character_spans() -> None:
    ids = list(range(100, 112))
    offsets = [(i * 5, i * 5 + 4) for i in range(12)]
    template = TokenTemplate(head=(101, 7), tail=(102,))
    chunks = chunk_document(ids, offsets, template=template, size=5, overlap=1, max_chunks=10)
    assert [c.input_ids[:2] for c in chunks] == [[101, 7]] * len(chunks)
    assert all(c.input_ids[-1] == 102 and len(c.input_ids) <= 5 + template.extra for c in chunks)
    assert chunks[0].char_start == 0 and chunks[-1].char_end == offsets[-1][1]
    assert chunks[1].input_ids[2] == ids[4]  # the overlap: the second window starts at token 4


def test_token_template_of_the_real_tokenizer() -> None:
    from jobs.embed.encode import describe_model, load_tokenizer

    tokenizer = load_tokenizer(describe_model("default"))
    plain = token_template(tokenizer)
    assert plain.head == (101,) and plain.tail == (102,)  # [CLS] ... [SEP]
    prefixed = token_template(tokenizer, "passage: ")
    assert prefixed.head[0] == 101 and len(prefixed.head) > 1


def test_document_vectors_are_normalised_means_of_their_chunks() -> None:
    vectors = np.array([[1, 0], [0, 1], [3, 4], [1, 1]], dtype=np.float32)
    pooled = pool_documents(vectors, [2, 1, 1])
    np.testing.assert_allclose(pooled[0], [2**-0.5, 2**-0.5], atol=1e-6)
    np.testing.assert_allclose(pooled[1], [0.6, 0.8], atol=1e-6)
    with pytest.raises(ValueError):
        pool_documents(vectors, [2, 1])
    with pytest.raises(ValueError):
        pool_documents(vectors, [4, 0])


def test_recipe_validation_key_and_text() -> None:
    recipe = TextRecipe()
    assert recipe.text_of("Title", "Body.") == "Title. Body."
    assert TextRecipe(fields=("title",)).text_of("Title", "Body.") == "Title"
    assert TextRecipe(fields=("text",)).text_of("Title", " ") == ""
    assert TextRecipe.from_json(recipe.to_json()) == recipe
    assert TextRecipe(overlap=16).key != recipe.key and TextRecipe().key == recipe.key
    assert recipe.content_tokens(max_seq_length=256, special_tokens=1, prefix_tokens=1) == 254
    assert (
        TextRecipe(chunk_tokens=100).content_tokens(max_seq_length=256, special_tokens=1, prefix_tokens=1)
        == 100
    )
    with pytest.raises(RecipeError, match="lower --chunk-tokens"):
        TextRecipe(chunk_tokens=300).content_tokens(max_seq_length=256, special_tokens=1, prefix_tokens=1)
    for bad in ({"fields": ("body",)}, {"fields": ()}, {"chunk_tokens": 4}, {"overlap": -1},
                {"chunk_tokens": 32, "overlap": 32}, {"max_chunks": 0}, {"max_chunks": 5000}):  # fmt: skip
        with pytest.raises(RecipeError):
            TextRecipe(**bad)  # type: ignore[arg-type]


def test_pool_plan_uses_gpus_when_present_and_splits_cpus_otherwise() -> None:
    cfg = EmbedJobConfig(database_url="x", storage_uri="y", model_name="default")
    cpu = plan_pools(cfg, {"CPU": 2.0})
    assert cpu.encoder_gpus == 0 and cpu.encoders == 2 and cpu.threads == 1
    assert cpu.encoders * cpu.encoder_cpus + 2 * cpu.tokenizers * cpu.tokenize_cpus <= 2.0
    gpu = plan_pools(cfg, {"CPU": 16.0, "GPU": 2.0})
    assert (gpu.encoders, gpu.encoder_gpus, gpu.tokenizers) == (2, 1.0, 4)
    forced_cpu = plan_pools(
        EmbedJobConfig(database_url="x", storage_uri="y", model_name="d", device="cpu"),
        {"CPU": 4.0, "GPU": 1.0},
    )
    assert forced_cpu.encoder_gpus == 0 and forced_cpu.encoders == 4
