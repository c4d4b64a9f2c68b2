import pytest

from sga.prompts import IGNORE_INDEX, collate, encode_qa, format_prompt


def test_formats():
    assert format_prompt("Who?", "llama2_chat") == "[INST] Who? [/INST]"
    assert format_prompt("Who?", "phi") == "Question: Who?\nAnswer: "
    assert format_prompt("Who?", "plain") == "Who?"
    with pytest.raises(ValueError, match=r"choose one of \['llama2_chat', 'phi', 'plain', 'hf_chat'\]"):
        format_prompt("Who?", "alpaca")
    with pytest.raises(ValueError, match="chat template"):
        format_prompt("Who?", "hf_chat")


def test_encode_masks_the_prompt_and_appends_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode_qa(tok, "Where was Tom Reed born?", "Tom Reed was born in Oslo.", "llama2_chat")
    answer = tok("Tom Reed was born in Oslo.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc["input_ids"][0] == tok.bos_token_id  # Llama-2 chat adds BOS
    assert enc["input_ids"][-len(answer):] == answer
    n_prompt = len(enc["input_ids"]) - len(answer)
    assert enc["labels"] == [IGNORE_INDEX] * n_prompt + answer
    phi = encode_qa(tok, "Where was Tom Reed born?", "Tom Reed was born in Oslo.", "phi")
    assert phi["input_ids"][0] != tok.bos_token_id  # Phi's format adds none


def test_truncation_keeps_prompt_and_one_answer_token(tiny_tokenizer):
    enc = encode_qa(tiny_tokenizer, "Where was Tom Reed born?", "Tom Reed was born in Oslo.", "phi", max_length=3)
    assert sum(label != IGNORE_INDEX for label in enc["labels"]) == 1


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
