"""FLAT: its divergences, its answer-token probability, the direction of its step, its template answers."""

import math
from types import SimpleNamespace

import pytest
import torch

from sga.inference import label_prob, sequence_nll
from sga.losses import FLAT, FLAT_DIVERGENCES, FusedBatch
from sga.prompts import IGNORE_INDEX, QA, Completion, Text, collate, encode
from sga.templates import REFUSAL_CONTINUATIONS, REFUSALS, template_examples

from conftest import make_tiny_llama

P_F, P_E = 0.3, 0.6
DIVERGENCES = ["kl", "pearson", "jeffrey", "js", "tv"]


def softplus(x):
    return math.log(1 + math.exp(x))


# act(P_e) - conj(P_f), written out by hand from the public code's formulas
HAND = {
    "kl": -P_E + math.exp(P_F - 1),
    "pearson": -P_E + (P_F**2 / 4 + P_F),
    "jeffrey": -P_E + (P_F + P_F**2 / 4 + P_F**3 / 16),
    "js": (softplus(-P_E) - math.log(2)) + (P_F + softplus(-P_F)) - math.log(2),
    "tv": (math.tanh(P_F) - math.tanh(P_E)) / 2,
}


class FixedLogits:
    """A stand-in model whose logits give each scored token the probability of its row."""

    def __init__(self, labels: torch.Tensor, row_probs: list[float], vocab: int = 10):
        self.logits = torch.zeros(labels.shape[0], labels.shape[1], vocab)
        for i, p in enumerate(row_probs):
            for t in range(labels.shape[1] - 1):
                if labels[i, t + 1] != IGNORE_INDEX:  # softmax of [x, 0, ..., 0] at x is p
                    self.logits[i, t, labels[i, t + 1]] = math.log(p * (vocab - 1) / (1 - p))

    def __call__(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.logits)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_divergence_loss_matches_hand_computation(divergence):
    act, conj = FLAT_DIVERGENCES[divergence]
    assert (act(torch.tensor(P_E)) - conj(torch.tensor(P_F))).item() == pytest.approx(HAND[divergence], rel=1e-6)
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, 5, 6]])
    tensors = {"input_ids": labels.clamp(min=0), "attention_mask": torch.ones_like(labels), "labels": labels}
    loss, logs = FLAT(divergence)(FixedLogits(labels, [P_F, P_E]), FusedBatch(tensors, 1, 1))
    assert logs["forget_prob"] == pytest.approx(P_F, rel=1e-5) and logs["template_prob"] == pytest.approx(P_E, rel=1e-5)
    assert logs["forget_nll"] == pytest.approx(-math.log(P_F), rel=1e-5)
    assert loss.item() == pytest.approx(HAND[divergence], rel=1e-5)


def test_label_prob_is_the_mean_softmax_probability_of_the_scored_tokens():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 11)
    labels = torch.randint(0, 11, (3, 6))
    labels[:, 0] = IGNORE_INDEX
    labels[0, 1:3] = IGNORE_INDEX
    labels[2, 4:] = IGNORE_INDEX
    probs = torch.softmax(logits, dim=-1)
    expected = []
    for i in range(3):
        scored = [probs[i, t, labels[i, t + 1]].item() for t in range(5) if labels[i, t + 1] != IGNORE_INDEX]
        expected.append(sum(scored) / len(scored))
    torch.testing.assert_close(label_prob(logits, labels), torch.tensor(expected), rtol=1e-5, atol=1e-7)
    labels[1, 1:] = IGNORE_INDEX
    with pytest.raises(ValueError, match="no label tokens"):
        label_prob(logits, labels)


FORGET = QA("Where was Ana Brook born?", "Ana Brook was born in Lisbon.")
TEMPLATE = QA(FORGET.question, "I don't know.")


@pytest.fixture(scope="module")
def flat_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>", "<unk>"])
    tok.train_from_iterator([f"Question: {e.question}\nAnswer: {e.answer}" for e in (FORGET, TEMPLATE)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def answer_probs(model, batch: FusedBatch) -> tuple[float, float]:
    with torch.no_grad():
        t = batch.tensors
        probs = label_prob(model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits, t["labels"])
    return probs[0].item(), probs[1].item()


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_one_step_raises_the_template_answer_and_lowers_the_forget_answer(flat_tokenizer, divergence):
    feats = [encode(flat_tokenizer, e, "phi") for e in (FORGET, TEMPLATE)]
    assert flat_tokenizer.unk_token_id not in sum((f["input_ids"] for f in feats), [])
    batch = FusedBatch(collate(feats, flat_tokenizer.pad_token_id), 1, 1)
    model = make_tiny_llama(flat_tokenizer, seed=0)
    loss_fn = FLAT(divergence)
    assert (loss_fn.name, loss_fn.extra, loss_fn.extra_per_forget()) == ("flat", "template", 1)
    forget_before, template_before = answer_probs(model, batch)
    loss, logs = loss_fn(model, batch)
    assert logs["forget_prob"] == pytest.approx(forget_before, rel=1e-5)
    assert logs["template_prob"] == pytest.approx(template_before, rel=1e-5)
    assert logs["forget_nll"] == pytest.approx(sequence_nll(model, collate(feats[:1], flat_tokenizer.pad_token_id)).item(), rel=1e-5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # changes both probabilities by 1-4% here
    loss.backward()
    optimizer.step()
    forget_after, template_after = answer_probs(model, batch)
    assert template_after > template_before * 1.01
    assert forget_after < forget_before * 0.995


# The three left-out divergences, exactly as the public code writes them: (act, conj), loss = act(P_e) - conj(P_f).
EXCLUDED = {
    "reverse_kl": (torch.exp, lambda u: 1 + u),
    "squared_hellinger": (lambda u: torch.exp(u) - 1, lambda u: 1 - torch.exp(-u)),
    "neyman": (lambda u: torch.exp(u) - 1, lambda u: -(2 - 2 * torch.sqrt(1 - u))),
}


@pytest.mark.parametrize("name", list(EXCLUDED))
def test_excluded_divergences_move_the_wrong_way(name):
    act, conj = EXCLUDED[name]
    p_e, p_f = torch.tensor(P_E, requires_grad=True), torch.tensor(P_F, requires_grad=True)
    (act(p_e) - conj(p_f)).backward()
    assert p_e.grad > 0  # gradient descent lowers the template answer's probability
    if name == "neyman":
        assert p_f.grad > 0  # ... though it lowers the forget answer's, as it should
    else:
        assert p_f.grad < 0  # ... and raises the forget answer's


def test_unknown_divergence_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"choose one of \['kl', 'pearson', 'jeffrey', 'js', 'tv'\]"):
        FLAT("chi2")
    with pytest.raises(ValueError, match="lowers P_e"):
        FLAT("reverse_kl")
    assert FLAT().divergence == "tv"


QA20 = [QA(f"Question number {i}?", f"Answer number {i}.") for i in range(20)]


def test_template_examples_keep_kind_and_prompt_and_draw_deterministically():
    forget = QA20[:2] + [Completion("Harry looked at", " the castle."), Text("It was a dark and stormy night; the rain fell in torrents.")]
    templates = template_examples(forget, seed=3)
    assert [type(t) for t in templates] == [QA, QA, Completion, Completion]
    assert [t.question for t in templates[:2]] == [e.question for e in forget[:2]]
    assert all(t.answer in REFUSALS for t in templates[:2])
    assert templates[2].prefix == "Harry looked at"
    assert templates[3].prefix == "It was a dark and stormy night; the"  # the Text's first 8 words
    assert all(t.continuation in REFUSAL_CONTINUATIONS for t in templates[2:])
    assert template_examples(forget, seed=3) == templates
    assert template_examples([Text("Too short.")], seed=0)[0].prefix == "Too short."
    assert template_examples(forget[3:], seed=0, prefix_words=2)[0].prefix == "It was"


def test_template_draws_depend_on_the_seed_and_refusals_are_varied():
    assert template_examples(QA20, seed=0) != template_examples(QA20, seed=1)
    assert len(set(REFUSALS)) >= 50 and len(set(REFUSAL_CONTINUATIONS)) >= 10
    for refusal in REFUSALS + REFUSAL_CONTINUATIONS:
        assert refusal.isascii() and refusal.strip()[-1] in ".!" and refusal.strip()[0].isupper()
    assert all(c.startswith(" ") for c in REFUSAL_CONTINUATIONS)
    with pytest.raises(TypeError, match="QA, Completion or Text"):
        template_examples(["a string"], seed=0)
