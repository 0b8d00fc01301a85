"""The humor model's ridge on TF-IDF (and dense features), and its blend with the cross-encoders."""
from __future__ import annotations

import numpy as np

from ..util import words
from .data import Example


class TfidfRidge:
    """Ridge regression on TF-IDF of the answer and of its words missing from the prompt (for
    Humicroedit: the edit), the penalty picked by 5-fold cross-validation. Alone it is the classic
    baseline; a model's ridge also reads dense features (`HumorModel.embeddings`). Kept as plain
    numbers (`state`), so a model folder holds no pickles."""

    ANSWERS = {"ngram_range": (1, 2), "sublinear_tf": True}

    def __init__(self, state: dict):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.state = state
        self.answers = TfidfVectorizer(vocabulary=state["answers"]["vocabulary"], **self.ANSWERS)
        self.answers.idf_ = np.array(state["answers"]["idf"])
        self.edits = TfidfVectorizer(vocabulary=state["edits"]["vocabulary"])
        self.edits.idf_ = np.array(state["edits"]["idf"])

    @staticmethod
    def novel(prompt: str, answer: str) -> str:
        """The answer's words missing from the prompt (Humicroedit: the edit)."""
        seen = set(words(prompt))
        return " ".join(w for w in words(answer) if w not in seen)

    @classmethod
    def fit(cls, examples: list[Example], dense: np.ndarray | None = None) -> TfidfRidge:
        """Vocabularies and weights fitted on `examples` (and their dense features, one row each)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import RidgeCV

        answers = TfidfVectorizer(min_df=2, **cls.ANSWERS).fit([e.answer for e in examples])
        edits = TfidfVectorizer().fit([cls.novel(e.prompt, e.answer) for e in examples])
        state = {name: {"vocabulary": {t: int(i) for t, i in v.vocabulary_.items()}, "idf": v.idf_.tolist()}
                 for name, v in (("answers", answers), ("edits", edits))}
        model = cls({**state, "dense": 0 if dense is None else dense.shape[1], "coef": [], "intercept": 0.0})
        X = model.features([e.prompt for e in examples], [e.answer for e in examples], dense)
        ridge = RidgeCV(alphas=np.logspace(-1, 2, 8), cv=5).fit(X, [e.score for e in examples])
        model.state.update(coef=ridge.coef_.tolist(), intercept=float(ridge.intercept_))
        return model

    def features(self, prompts: list[str], answers: list[str], dense: np.ndarray | None = None):
        """The sparse design matrix: TF-IDF of the answers, of their novel words, then `dense`."""
        from scipy.sparse import csr_matrix, hstack

        edits = map(self.novel, prompts, answers)
        parts = [self.answers.transform(answers), self.edits.transform(edits)]
        return hstack(parts + ([] if dense is None else [csr_matrix(dense)])).tocsr()

    def predict(self, prompts: list[str], answers: list[str], dense: np.ndarray | None = None) -> np.ndarray:
        """Scores (unclipped) of the pairs."""
        X = self.features(prompts, answers, dense)
        return X @ np.array(self.state["coef"]) + self.state["intercept"]


def blend(model: np.ndarray, ridge: np.ndarray, w: float) -> np.ndarray:
    """The members' mean and the ridge's scores mixed with the ridge weighted `w`."""
    return (1 - w) * model + w * ridge


def fit_blend(y: np.ndarray, model: np.ndarray, ridge: np.ndarray) -> float:
    """The ridge's weight w in (1 - w) model + w ridge with the least squared error, in [0, 1]."""
    d = model - ridge
    return float(np.clip(np.dot(d, model - y) / max(np.dot(d, d), 1e-12), 0, 1))
