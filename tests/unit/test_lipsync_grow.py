"""Growing a trained lip-sync network into a wider, longer-context one keeps its output (function-preserving)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: pip install 'avaluma[train]'")

from avaluma.renderer.lipsync.features import N_MELS  # noqa: E402
from avaluma.renderer.lipsync.training.model import LipSyncNet, ModelConfig  # noqa: E402
from avaluma.renderer.lipsync.training.train import grown  # noqa: E402


def _trained_like(config: ModelConfig) -> LipSyncNet:
    """A small network with non-trivial weights everywhere (a stand-in for a trained one)."""
    torch.manual_seed(1)
    net = LipSyncNet(config, torch.randn(N_MELS), torch.rand(N_MELS) + 0.5)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net.eval()


def test_grown_network_computes_what_the_small_one_did() -> None:
    small_cfg = ModelConfig(channels=8, dilations=(1, 2), lookahead=2)
    big_cfg = ModelConfig(channels=12, dilations=(1, 2), lookahead=2, causal_dilations=(4,))
    small = _trained_like(small_cfg)
    big = LipSyncNet(big_cfg)
    big.load_state_dict(grown(small.state_dict(), big_cfg))
    big.eval()
    x = torch.randn(2, 60, N_MELS)
    with torch.no_grad():
        vis_s, par_s = small(x)
        vis_b, par_b = big(x)
    # The causal block adds past context only: the big network's outputs are the small one's last frames, aligned.
    shift = big_cfg.past - small_cfg.past
    assert big_cfg.lookahead == small_cfg.lookahead and shift == 8
    assert vis_b.shape[1] == vis_s.shape[1] - shift
    torch.testing.assert_close(vis_b, vis_s[:, shift:], atol=1e-5, rtol=0)
    torch.testing.assert_close(par_b, par_s[:, shift:], atol=1e-5, rtol=0)
    # All of the new capacity trains: a loss on the output reaches the zeroed weights.
    vis_logits, _ = big.logits(x)
    vis_logits.square().mean().backward()
    assert big.blocks[2].mix.weight.grad.abs().sum() > 0
    assert big.blocks[0].mix.weight.grad[:, 8:].abs().sum() > 0


def test_growing_into_a_smaller_network_is_refused() -> None:
    big = _trained_like(ModelConfig(channels=12, dilations=(1, 2)))
    with pytest.raises(ValueError, match="cannot grow"):
        grown(big.state_dict(), ModelConfig(channels=8, dilations=(1, 2)))
