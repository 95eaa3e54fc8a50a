"""The MiniLM weights are verified wherever they come from, and the embedding cache is keyed by
the encoder's weights and settings, not by the text alone."""

from __future__ import annotations

import numpy as np
import pytest
from nas.predictors.onnxnet import encoder
from nas.predictors.onnxnet.encoder import EmbeddingCache, encoder_fingerprint, text_key

from nas.errors import DataError


@pytest.mark.skipif(not encoder.available(), reason="all-MiniLM-L6-v2 weights not installed")
def test_installed_weights_verify_and_a_tampered_copy_is_refused(tmp_path, monkeypatch):
    real = encoder.model_dir()
    assert encoder.verified_model_dir() == real
    folder = tmp_path / "minilm"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(real / "model.safetensors")
    tok = (real / "tokenizer.json").read_bytes()
    (folder / "tokenizer.json").write_bytes(tok.replace(b'"[UNK]"', b'"[UNX]"', 1))
    monkeypatch.setenv(encoder.MODEL_ENV, str(folder))
    with pytest.raises(DataError, match=r"tokenizer.json is not all-MiniLM-L6-v2's \(SHA-256"):
        encoder.verified_model_dir()
    (folder / "tokenizer.json").write_bytes(tok)
    assert encoder.verified_model_dir() == folder  # the same files from the user's folder


def test_a_folder_with_other_weights_is_refused(tmp_path, monkeypatch):
    for name in encoder.FILES:
        (tmp_path / name).write_bytes(b"{}")
    monkeypatch.setenv(encoder.MODEL_ENV, str(tmp_path))
    with pytest.raises(DataError, match=r"model.safetensors is not .*2 bytes, expected 90,868,376"):
        encoder.verified_model_dir()


def test_fingerprint_covers_weights_and_settings():
    fp = encoder_fingerprint()
    assert fp == encoder_fingerprint(encoder.MAX_TOKENS) != encoder_fingerprint(128)
    assert len(fp) == 16


def test_cache_entries_are_kept_per_encoder_setting(tmp_path):
    path = tmp_path / "emb.npz"
    key, vec = text_key("Conv kernel 3x3"), np.full(encoder.DIM, 0.5, np.float32)
    a = EmbeddingCache(path, fingerprint="a" * 16)
    a.table[key] = vec
    a._dirty = True
    a.flush()
    b = EmbeddingCache(path, fingerprint="b" * 16)
    assert b.table == {}  # made by another setting: not served
    b.table[key] = 2 * vec
    b._dirty = True
    b.flush()  # keeps a's entry
    again = EmbeddingCache(path, fingerprint="a" * 16)
    np.testing.assert_array_equal(again.table[key], vec)
    np.testing.assert_array_equal(EmbeddingCache(path, fingerprint="b" * 16).table[key], 2 * vec)
    np.savez(path, keys=np.array([key]), vecs=vec[None].astype(np.float16))  # unkeyed: old file
    assert EmbeddingCache(path, fingerprint="a" * 16).table == {}
