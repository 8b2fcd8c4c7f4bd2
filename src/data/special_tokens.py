"""The special tokens every tokenizer kind shares: their strings and their fixed ids.

BPE, char, word and byte tokenizers all put these four first, in this order, so a model, a batch
or a checkpoint never needs to know which kind produced its ids. Classification reads a text's
summary from the first position, BERT's ``[CLS]``; it reuses BOS there rather than adding a fifth
token, so every vocabulary keeps the same four.
"""

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # trained in this order, so their ids are 0, 1, 2, 3
CLS_ID = BOS_ID
# BERT's [MASK] (Devlin et al. 2019, Sec. 3.1): only the masked-LM task's tokenizer has it, appended after
# training (so at the vocabulary's last id, read with ``tokenizer.token_to_id(MASK)``), which leaves the
# ids of every other vocabulary unchanged; a classifier fine-tuned from that model keeps the tokenizer
MASK = "[MASK]"
