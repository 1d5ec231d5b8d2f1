"""The tiny random BERT config every unit test builds on, and a saved model of it for pipeline
runs (a plain module, so any test file or conftest can import it without depending on conftest
module naming)."""


def tiny_bert_kwargs(**overrides) -> dict:
    """Keyword arguments of a tiny ``BertConfig`` (2 layers, hidden 32, 4 heads of 8, FFN 48)."""
    kwargs = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    kwargs.update(overrides)
    return kwargs


def save_tiny_bert(out, tokenizer_dir, **overrides):
    """Save a vanilla HF ``BertForSequenceClassification`` (random, seed 0, hidden 32, vocabulary
    and positions of a real tokenizer) with ``tokenizer_dir``'s tokenizer (the MiniLM's) into
    ``out``: a model directory ``model.pretrained`` can name, for pipelines of seconds."""
    import shutil

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    kwargs = {"vocab_size": 30522, "max_position_embeddings": 128, **overrides}
    BertForSequenceClassification(BertConfig(**tiny_bert_kwargs(**kwargs))).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(tokenizer_dir / name, out / name)
    return out
