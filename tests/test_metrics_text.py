import numpy as np
import pytest
import sacrebleu

from sga.metrics.text import rouge_l_f1, rouge_l_recall, sentence_bleu


def test_rouge_l_recall_hand_checked():
    # LCS("the cat sat", "the cat sat on the mat") = 3 tokens of a 6-token reference.
    got = rouge_l_recall(["the cat sat", "on the mat", "dog"], ["the cat sat on the mat"] * 3)
    np.testing.assert_allclose(got, [0.5, 0.5, 0.0])


def test_rouge_l_recall_is_against_the_reference_not_the_prediction():
    # the whole 2-token reference is inside the 6-token prediction: recall 1, precision 1/3
    assert rouge_l_recall(["the cat sat on the mat"], ["cat mat"])[0] == pytest.approx(1.0)
    assert rouge_l_f1(["the cat sat on the mat"], ["cat mat"])[0] == pytest.approx(2 * (1 / 3) / (1 + 1 / 3))


def test_rouge_l_f1_hand_checked():
    # precision 3/3, recall 3/6 -> F1 = 2 * 1 * 0.5 / 1.5
    assert rouge_l_f1(["the cat sat"], ["the cat sat on the mat"])[0] == pytest.approx(2 / 3)


def test_stemmer_setting_changes_the_match():
    assert rouge_l_recall(["cats running"], ["cat run"], use_stemmer=True)[0] == pytest.approx(1.0)
    assert rouge_l_recall(["cats running"], ["cat run"], use_stemmer=False)[0] == pytest.approx(0.0)
    assert rouge_l_f1(["cats running"], ["cat run"])[0] == pytest.approx(0.0)
    assert rouge_l_f1(["cats running"], ["cat run"], use_stemmer=True)[0] == pytest.approx(1.0)


def test_sentence_bleu_identical_disjoint_and_parity_with_sacrebleu():
    pred, ref = "the cat sat on a mat today", "the cat sat on the mat today"
    got = sentence_bleu(["a b c d e", "a b c d e", pred], ["a b c d e", "v w x y z", ref])
    assert got[0] == pytest.approx(100.0)
    assert got[1] == pytest.approx(0.0)
    assert got[2] == pytest.approx(sacrebleu.sentence_bleu(pred, [ref]).score)
    assert 0 < got[2] < 100


def test_empty_input_gives_empty_arrays():
    for fn in (rouge_l_recall, rouge_l_f1, sentence_bleu):
        assert fn([], []).shape == (0,)


@pytest.mark.parametrize("fn", [rouge_l_recall, rouge_l_f1, sentence_bleu])
def test_bad_input_is_rejected(fn):
    with pytest.raises(ValueError, match="one reference per prediction"):
        fn(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="sequences of strings"):
        fn("a b", "a b")
