"""Published transformers, with the parameter counts their authors' code reports.

Each entry names the configuration, the code whose count it reproduces and that count. The
graph's ``params()`` equals it exactly (tests check every entry):

* GPT-2 (Radford et al. 2019): Hugging Face ``GPT2LMHeadModel(GPT2Config(...))
  .num_parameters()``, which counts the output layer tied to the token embedding once;
  LayerNorm eps 1e-5, the tanh GELU (``gelu_new``), 1,024 learned positions.
* BERT-base (Devlin et al. 2019), uncased vocabulary: Hugging Face ``BertModel``
  ``num_parameters()`` with its pooler (token-type table of 2 rows, LayerNorm eps 1e-12,
  exact GELU, post-norm).
* all-MiniLM-L6-v2 (the encoder this project's ONNX-Net predictor runs): the same
  ``BertModel`` count, 22,713,216, which is also the number of float32 values in the
  weights file it ships (``model.safetensors``), checked against the file in the tests.
* ViT-B/16 at 224x224 (Dosovitskiy et al. 2021): ``timm`` ``vit_base_patch16_224``
  ``sum(p.numel() for p in model.parameters())`` (= Hugging Face
  ``ViTForImageClassification``), ImageNet-1k head, class token, LayerNorm eps 1e-6.

Multiply-accumulates follow this platform's convention (see
:mod:`nas.search_spaces.transformer.network`) at the sequence length in the name's settings
(``seq``; ViT: 197 tokens); append ``,seq=N`` to count another length.
"""

from __future__ import annotations

from dataclasses import dataclass

from nas.search_spaces.transformer.space import TransformerConfig


@dataclass(frozen=True)
class Published:
    """A published model: its configuration, the count its authors' code reports, where."""

    config: TransformerConfig
    params: int
    source: str


def _gpt2(layers: int, d: int, heads: int) -> TransformerConfig:
    return TransformerConfig(
        kind="decoder",
        layers=layers,
        d_model=d,
        heads=heads,
        ffn=4 * d,
        mlp="gelu_tanh",
        norm_eps=1e-5,
        vocab=50257,
        context=1024,
    )


def _bert(layers: int, d: int, heads: int) -> TransformerConfig:
    return TransformerConfig(
        kind="encoder",
        layers=layers,
        d_model=d,
        heads=heads,
        ffn=4 * d,
        mlp="gelu",
        norm_eps=1e-12,
        prenorm=False,
        vocab=30522,
        context=512,
        tied=False,
        segments=2,
        pooler=True,
    )


PUBLISHED: dict[str, Published] = {
    "gpt2": Published(
        _gpt2(12, 768, 12),
        124_439_808,
        "Hugging Face transformers GPT2LMHeadModel('gpt2').num_parameters()",
    ),
    "gpt2-medium": Published(
        _gpt2(24, 1024, 16),
        354_823_168,
        "Hugging Face transformers GPT2LMHeadModel('gpt2-medium').num_parameters()",
    ),
    "bert-base": Published(
        _bert(12, 768, 12),
        109_482_240,
        "Hugging Face transformers BertModel('bert-base-uncased').num_parameters()",
    ),
    "minilm-l6": Published(
        _bert(6, 384, 12),
        22_713_216,
        "sentence-transformers/all-MiniLM-L6-v2: BertModel.num_parameters(), the float32 "
        "values of its model.safetensors",
    ),
    "vit-b16": Published(
        TransformerConfig(
            kind="vit",
            layers=12,
            d_model=768,
            heads=12,
            ffn=3072,
            mlp="gelu",
            norm_eps=1e-6,
            vocab=0,
            context=0,
            tied=False,
            image=224,
            patch=16,
            channels=3,
            classes=1000,
        ),
        86_567_656,
        "timm vit_base_patch16_224 (= transformers ViTForImageClassification) parameters",
    ),
}
