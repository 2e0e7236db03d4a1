"""Thin wrappers around torch's transformer stacks, set up the way the policy families use them.

Pre-norm (norm_first) trains stably without a warm-up schedule, so a final LayerNorm closes each
stack. batch_first keeps tensors (B, T, D) like the observation tokens. The nested-tensor fast path
is switched off because it does not apply to pre-norm layers and only warns.
"""

from __future__ import annotations

from torch import nn


def transformer_encoder(d_model: int, n_heads: int, layers: int, dim_feedforward: int,
                        dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward, dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model),
                                 enable_nested_tensor=False)


def transformer_decoder(d_model: int, n_heads: int, layers: int, dim_feedforward: int,
                        dropout: float) -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(d_model, n_heads, dim_feedforward, dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d_model))
