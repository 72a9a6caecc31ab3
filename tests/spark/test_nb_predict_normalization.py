"""Unicode normalisation at prediction: a model trained with ``normalization=NFC`` gives a document
spelled in NFD the answer it gives the same document spelled in NFC, on both prediction paths,
and both equal scikit-learn fitted on the NFC-normalised training text (normalised here with
``unicodedata``, not by the project's tokeniser). A model trained without normalisation does not
(the NFD spelling's words are unknown to it), so the check can tell.
"""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import pytest

from helpers import predict_in_process, project_vectorizer, train_model_in_process

pytestmark = pytest.mark.spark

PROBABILITY_TOLERANCE = 1e-9
WORDS = {
    "fr": ["café", "résumé", "naïve", "élève", "crème", "brûlée", "façade", "déjà", "été", "noël"],
    "de": ["über", "mädchen", "straße", "schön", "grün", "käse", "brötchen", "müde", "été", "öl"],
    "en": ["coffee", "summary", "student", "cream", "front", "already", "summer", "green", "cheese", "oil"],
}


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def documents(seed: int, n_per_class: int, words_per_doc: int) -> list[dict]:
    """Documents of mostly their class's words with a few of the others' (so that answers and
    probabilities vary); every other document spelled in NFD."""
    rng = random.Random(seed)
    every = [w for words in WORDS.values() for w in words]
    docs = []
    for label, words in WORDS.items():
        for i in range(n_per_class):
            text = " ".join(rng.choice(words) if rng.random() < 0.7 else rng.choice(every) for _ in range(words_per_doc))
            docs.append({"id": f"{label}-{seed}-{i}", "label": label, "text": nfd(text) if i % 2 else text})
    return docs


def sklearn_on_normalised_text(train: list, test: list):
    """(classes, predict_proba of ``test``) of MultinomialNB on NFC-normalised text."""
    from sklearn.naive_bayes import MultinomialNB


    def normalised(docs):
        return [unicodedata.normalize("NFC", d["text"]) for d in docs]

    vectorizer = project_vectorizer()
    model = MultinomialNB(alpha=1.0).fit(vectorizer.fit_transform(normalised(train)), [d["label"] for d in train])
    return list(model.classes_), model.predict_proba(vectorizer.transform(normalised(test)))


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """Two models of the same documents: NFC-normalised (2 shards) and not normalised."""
    from nbknn.inputs.tokenizer import TokenizerConfig

    base = tmp_path_factory.mktemp("normalization")
    train = documents(1, 30, 12)
    models = {
        name: train_model_in_process(spark, train, base / name, num_shards=2, tokenizer=TokenizerConfig(normalization=form))
        for name, form in (("nfc", "NFC"), ("none", "none"))
    }
    return train, models, base


def test_spelled_document_pairs_differ_in_code_points():
    test = documents(2, 8, 6)
    assert sum(d["text"] != nfd(d["text"]) for d in test) > 10


@pytest.mark.parametrize("path", ["single_pass", "per_shard"])
def test_nfd_and_nfc_spellings_get_the_same_answer_as_sklearn_on_normalised_text(spark, trained, path):
    train, models, base = trained
    test = documents(2, 8, 6)
    nfc_docs = [{**d, "id": f"nfc-{d['id']}", "text": unicodedata.normalize("NFC", d["text"])} for d in test]
    nfd_docs = [{**d, "id": f"nfd-{d['id']}", "text": nfd(d["text"])} for d in test]
    predictions, _, _ = predict_in_process(spark, models["nfc"], nfc_docs + nfd_docs, base / f"run-{path}", path=path)
    classes, proba = sklearn_on_normalised_text(train, test)
    expected = [classes[i] for i in np.argmax(proba, axis=1)]
    assert len(set(expected)) == 3  # the documents are not all one class
    for spelled in (nfc_docs, nfd_docs):
        got = [predictions[d["id"]] for d in spelled]
        assert [g["label"] for g in got] == expected
        np.testing.assert_allclose([g["probability"] for g in got], proba.max(axis=1), rtol=0,
                                   atol=PROBABILITY_TOLERANCE)


def test_without_normalisation_the_nfd_spelling_is_another_document(spark, trained):
    """The control: a model that does not normalise answers the two spellings differently."""
    _, models, base = trained
    test = documents(2, 8, 6)
    nfc_docs = [{**d, "id": f"nfc-{d['id']}", "text": unicodedata.normalize("NFC", d["text"])} for d in test]
    nfd_docs = [{**d, "id": f"nfd-{d['id']}", "text": nfd(d["text"])} for d in test]
    predictions, _, _ = predict_in_process(spark, models["none"], nfc_docs + nfd_docs, base / "run-none")
    differing = [d["id"] for d, e in zip(nfc_docs, nfd_docs)
                 if predictions[d["id"]]["probability"] != pytest.approx(predictions[e["id"]]["probability"], abs=1e-9)]
    assert len(differing) > len(test) // 2
