"""The tiny random BERT config every unit test builds on (a plain module, so any test file
or conftest can import it without depending on conftest module naming)."""


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
