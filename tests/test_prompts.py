import copy

import pytest

from sga.prompts import IGNORE_INDEX, QA, Completion, Text, collate, encode, example_text, forget_token_ids, format_prompt, token_ids


def test_formats():
    assert format_prompt("Who?", "llama2_chat") == "[INST] Who? [/INST]"
    assert format_prompt("Who?", "phi") == "Question: Who?\nAnswer: "
    assert format_prompt("Who?", "plain") == "Who?"
    with pytest.raises(ValueError, match=r"choose one of \['llama2_chat', 'phi', 'plain', 'raw', 'soul', 'hf_chat'\]"):
        format_prompt("Who?", "alpaca")
    with pytest.raises(ValueError, match="chat template"):
        format_prompt("Who?", "hf_chat")


def test_encode_masks_the_prompt_and_appends_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode(tok, QA("Where was Tom Reed born?", "Tom Reed was born in Oslo."), "llama2_chat")
    answer = tok("Tom Reed was born in Oslo.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc["input_ids"][0] == tok.bos_token_id  # Llama-2 chat adds BOS
    assert enc["input_ids"][-len(answer):] == answer
    n_prompt = len(enc["input_ids"]) - len(answer)
    assert enc["labels"] == [IGNORE_INDEX] * n_prompt + answer
    phi = encode(tok, QA("Where was Tom Reed born?", "Tom Reed was born in Oslo."), "phi")
    assert phi["input_ids"][0] != tok.bos_token_id  # Phi's format adds none


def test_truncation_keeps_prompt_and_one_answer_token(tiny_tokenizer):
    enc = encode(tiny_tokenizer, QA("Where was Tom Reed born?", "Tom Reed was born in Oslo."), "phi", max_length=3)
    assert sum(label != IGNORE_INDEX for label in enc["labels"]) == 1


def test_completion_masks_the_prefix_and_scores_the_continuation(tiny_tokenizer):
    tok = tiny_tokenizer
    prefix, rest = tok("Tom Reed was", add_special_tokens=False)["input_ids"], tok(" born in Oslo", add_special_tokens=False)["input_ids"]
    enc = encode(tok, Completion("Tom Reed was", " born in Oslo"), "llama2_chat")  # no template, no EOS
    assert enc["input_ids"] == [tok.bos_token_id] + prefix + rest
    assert enc["labels"] == [IGNORE_INDEX] * (1 + len(prefix)) + rest
    cut = encode(tok, Completion("Tom Reed was", " born in Oslo"), "phi", max_length=len(prefix) + 2)
    assert cut["labels"] == [IGNORE_INDEX] * (1 + len(prefix)) + rest[:1]  # the prefix stays whole


def test_text_scores_every_token_after_bos(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = tok("Paris is the capital of France.", add_special_tokens=False)["input_ids"]
    enc = encode(tok, Text("Paris is the capital of France."), "phi")
    assert enc["input_ids"] == [tok.bos_token_id] + ids and enc["labels"] == [IGNORE_INDEX] + ids
    assert encode(tok, Text("Paris is the capital of France."), "phi", max_length=3)["labels"] == [IGNORE_INDEX] + ids[:2]
    with pytest.raises(ValueError, match="nothing to score"):
        encode(tok, Text(""), "phi")
    with pytest.raises(TypeError, match="QA, Completion or Text"):
        encode(tok, ("Who?", "Me."), "phi")


def test_example_text_joins_what_is_compared():
    assert example_text(QA("Who?", "Me.")) == "Who? Me."
    assert example_text(Completion("Once upon", " a time")) == "Once upon a time"
    assert example_text(Text("Plain.")) == "Plain."


def test_hf_chat_uses_the_tokenizers_template(tiny_tokenizer):
    tok = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = "<s>{% for m in messages %}User: {{ m['content'] }}{% endfor %}{% if add_generation_prompt %} Bot:{% endif %}"
    assert format_prompt("Who?", "hf_chat", tok) == "<s>User: Who? Bot:"


def test_collate_pads_both_sides():
    feats = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]}, {"input_ids": [8], "attention_mask": [1], "labels": [8]}]
    right = collate(feats, pad_token_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]] and right["labels"].tolist()[1] == [8, -100, -100]
    left = collate(feats, pad_token_id=0, padding_side="left")
    assert left["input_ids"].tolist()[1] == [0, 0, 8] and left["attention_mask"].tolist()[1] == [0, 0, 1]


class _Counting:
    """A tokenizer that counts its calls."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def __len__(self):
        return len(self.tokenizer)

    def __call__(self, text, **kwargs):
        self.calls += 1
        return self.tokenizer(text, **kwargs)


def test_token_ids_are_the_tokenizers_and_each_text_is_encoded_once(tiny_tokenizer):
    counting = _Counting(tiny_tokenizer)
    texts = ["Where was Tom Reed born?", "Paris is the capital of France.", ""]
    for _ in range(3):
        for text in texts:
            for special in (False, True):
                assert token_ids(counting, text, special) == tiny_tokenizer(text, add_special_tokens=special)["input_ids"]
    assert counting.calls == 2 * len(texts)
    ids = token_ids(counting, texts[0])
    ids.append(-1)  # the caller's list: the memo is not changed
    assert token_ids(counting, texts[0]) == tiny_tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    forget_token_ids(counting)
    token_ids(counting, texts[0])
    assert counting.calls == 2 * len(texts) + 1


def test_token_ids_follow_added_tokens(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    before = token_ids(tok, "Tom zyzzyva")
    assert before == [tok.convert_tokens_to_ids("Tom"), tok.unk_token_id]
    tok.add_tokens(["zyzzyva"])
    assert token_ids(tok, "Tom zyzzyva") == tok("Tom zyzzyva", add_special_tokens=False)["input_ids"] != before


def test_encode_is_unchanged_by_the_memo(tiny_tokenizer):
    """Every kind of example, encoded twice (the second time from the memo), as the tokenizer encodes it."""
    tok = tiny_tokenizer
    raw = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    examples = [QA("Where was Tom Reed born?", "Tom Reed was born in Oslo."), Completion("Ana Brook", " writes crime novels."),
                Text("Paris is the capital of France.")]
    expected = [raw("Question: Where was Tom Reed born?\nAnswer: ") + raw("Tom Reed was born in Oslo.") + [tok.eos_token_id],
                [tok.bos_token_id] + raw("Ana Brook") + raw(" writes crime novels."),
                [tok.bos_token_id] + raw("Paris is the capital of France.")]
    for _ in range(2):
        assert [encode(tok, e, "phi")["input_ids"] for e in examples] == expected
