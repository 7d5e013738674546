"""prefixtune.analysis on tiny random models: the numbers the prefix-analysis notebook plots mean what they say.

* the attention mass on the prefix equals what SDPA itself puts there (values one-hot on the prefix positions
  make SDPA's output the mass), grouped-query heads included;
* while decoding, the observer sees every layer once per forward call and switches off afterwards;
* nearest tokens of an embedding-only prefix placed exactly on vocabulary embeddings are those tokens;
* a word-initialised prefix starts at the words' activations (drift cosine ~1 before training).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import _tiny_method
from prefixtune import analysis
from prefixtune.methods.injection import _prefix_mass


@pytest.mark.parametrize(("hq", "hkv"), [(4, 4), (4, 2)])
def test_prefix_mass_is_what_sdpa_attends(hq, hkv):
    torch.manual_seed(0)
    b, q, length, t, d = 2, 3, 4, 5, 8
    query = torch.randn(b, hq, q, d)
    key = torch.randn(b, hkv, length + t, d)
    mask = torch.ones(b, 1, q, length + t, dtype=torch.bool)
    mask[1, ..., length + 3:] = False                       # some padding after the prefix
    value = torch.zeros(b, hkv, length + t, d)
    value[:, :, :length, 0] = 1.0                             # output[..., 0] = attention on the prefix
    rep = hq // hkv
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1), attn_mask=mask)
    mass = _prefix_mass(query, key, mask, length, None)
    assert mass.shape == (b, hq, q)
    torch.testing.assert_close(mass, out[..., 0], atol=1e-5, rtol=1e-5)
    assert float(mass.min()) > 0 and float(mass.max()) < 1


def test_attention_observer_sees_every_layer_while_decoding(compose_cfg):
    from prefixtune.data.collate import Encoder

    bb, m, cfg = _tiny_method("llama", "method=prefix", "method.length=3", "decode.max_new_tokens=4",
                              "decode.num_beams=2")
    enc = Encoder(bb, m.extra_source_tokens(), 64, 64)
    mass = analysis.attention_on_prefix(m, enc, ["name : Aromi | food : Thai", "name : Zizzi"], cfg.decode)
    assert m.provider.observe is None                         # off again: normal decoding pays nothing
    for part in ("prompt", "generated"):
        assert mass[part].shape == (bb.n_layer,) and np.all((mass[part] > 0) & (mass[part] < 1)), mass


def test_nearest_tokens_of_an_embedding_only_prefix():
    bb, m, _ = _tiny_method("gpt2", "method=embedding_only", "method.length=3", "method.reparam=none")
    emb = m.model.get_input_embeddings().weight
    ids = [5, 17, 42]
    with torch.no_grad():
        m.pools["self"].flat.copy_(emb[ids] * 3.0)            # same directions, other scale: cosine 1
    near = analysis.nearest_tokens(m, k=2)
    assert [n[0][0] for n in near] == [bb.tokenizer.decode([i]) for i in ids]
    assert all(abs(n[0][1] - 1.0) < 1e-5 for n in near)
    bb2, prefix, _ = _tiny_method("gpt2", "method=prefix")
    with pytest.raises(ValueError, match="embedding-only"):
        analysis.nearest_tokens(prefix)


def test_word_init_starts_at_the_words_activations():
    words = "table-to-text:"
    # a flat prefix is set exactly to the activations (the MLP form gets there by regression, approximately)
    bb, m, _ = _tiny_method("gpt2", "method=prefix", "method.init.kind=words", f"method.init.words='{words}'",
                            "method.reparam=none")
    m.eval()
    drift = analysis.init_drift(m, words)
    assert drift["key"].shape == (bb.n_layer,)
    np.testing.assert_allclose(drift["key"], 1.0, atol=1e-5)
    np.testing.assert_allclose(drift["value"], 1.0, atol=1e-5)
    with torch.no_grad():  # moved away from the words: the drift measure shows it
        m.pools["self"].flat.add_(torch.randn_like(m.pools["self"].flat) * 10)
    assert float(analysis.init_drift(m, words)["key"].max()) < 0.9
    norms = analysis.kv_norms(analysis.prefix_kv(m))
    assert norms["key"].shape == (bb.n_layer,) and np.all(norms["key"] > 0)
    sim = analysis.similarity(analysis.prefix_kv(m), analysis.prefix_kv(m))
    np.testing.assert_allclose(sim["key"], 1.0, atol=1e-5)
