import torch

from src.components.masks import causal_mask, padding_mask, to_torch_mask


def test_padding_mask_is_true_at_real_tokens_and_broadcasts_over_heads_and_queries():
    tokens = torch.tensor([[5, 6, 0], [7, 0, 0]])
    mask = padding_mask(tokens, pad_id=0)
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert mask[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]


def test_causal_mask_square_is_lower_triangular():
    assert torch.equal(causal_mask(3, 3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))


def test_causal_mask_aligns_new_queries_with_the_last_keys():
    # two new tokens after two cached ones: query 0 is position 2, query 1 is position 3
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(1, 5).all()


def test_to_torch_mask_inverts_the_convention():
    mask = padding_mask(torch.tensor([[4, 0]]), pad_id=0)
    assert to_torch_mask(mask).tolist() == [[False, True]]
    assert torch.equal(to_torch_mask(causal_mask(2, 2)), torch.tensor([[False, True], [False, False]]))
