"""Heuristic scorer: explained lexical dimensions, combined by a fitted linear model.

Each dimension is a number in [0, 1] that a person can check against the prompt (how much
math, code, multi-step structure, ...). Their weights and the band cut points come from an
ordinal logistic fit on public labelled prompts (`tierwise train-heuristic`), stored beside
this file with the hash of the data they came from.

Cost is linear in the prompt: one lowercase pass, one tokenizing regex with no nested
quantifiers, set look-ups. Prompts longer than SCAN_CHARS are judged on their head and tail
(the length dimension still sees the whole size), so a 1 MB prompt scores in bounded time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from tierwise.config import Bands
from tierwise.request import ChatRequest
from tierwise.scoring.base import Band, Score, Scorer
from tierwise.scoring.task_kind import task_kind

SCAN_HEAD = 6000
SCAN_TAIL = 2000
WEIGHTS_FILE = "heuristic.json"

_WORD = re.compile(r"[a-z0-9]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_ENUMERATION = re.compile(r"(?m)^[ \t]*(?:\d{1,2}[.)]|[-*•])[ \t]")
_CODE_SYNTAX = re.compile(r"[{};]|=>|->|::|==|!=|\+=|\(\)|`|</?[a-z]+>|\w\.\w+\(")
_MATH_SYNTAX = re.compile(r"[=^√∑∫∂≤≥≠±×÷π]|\\[a-z]+|\d\s*[-+*/]\s*\d|\$")
_CHOICE = re.compile(r"(?m)^[ \t]*\(?[a-h][.)][ \t]+(.*)$")


def _words(*groups: str) -> frozenset[str]:
    return frozenset(w for g in groups for w in g.split())


# Several claims or scenarios judged at once ("Statement 1 | ...", "I. ... II. ...", "(i) (ii)"):
# each must be right for the answer to be right.
_CLAIM = re.compile(
    r"\b(?:statement|scenario|claim|premise|case)\s+\d|(?m:^[ \t]*\(?(?:i{1,3}|iv|v)[.)])"
)
_NEGATION = _words("not except least false incorrect never cannot neither nor")

MATH_WORDS = _words(
    "solve equation equations integral integrate derivative differentiate prove proof theorem",
    "lemma corollary matrix matrices eigenvalue eigenvalues eigenvector determinant vector",
    "probability expected variance polynomial calculate compute computed sum product limit",
    "converge convergence divergent series sequence modulo modular prime primes factor factorial",
    "logarithm log exponential sqrt root roots quadratic linear nonlinear differential calculus",
    "algebra algebraic geometry geometric topology topological combinatorics combinatorial",
    "optimization inequality inequalities infinitely infinite bound bounds asymptotic",
    "percent percentage ratio fraction average mean median total how",
    "triangle circle radius area volume perimeter angle degrees",
)
CODE_WORDS = _words(
    "code coding program programming python javascript typescript java rust golang cpp sql",
    "bash shell script function functions class classes method methods api apis endpoint bug",
    "bugs debug debugging compile compiler runtime exception error stack thread threads async",
    "await regex json yaml http rest database query queries implement implementation refactor",
    "algorithm algorithms recursion recursive complexity library framework react django flask",
    "docker kubernetes git unittest test tests deploy deployment microservice microservices",
    "concurrency concurrent mutex lock memory pointer pointers array arrays hashmap linked",
    "binary tree graph cache caching latency variable variables loop loops string integer",
)
REASONING_WORDS = _words(
    "prove derive derivation analyze analyse analysis compare contrast evaluate assess justify",
    "critique critically why implications implication tradeoff tradeoffs trade offs design",
    "architect architecture optimize optimise strategy strategies argue argument discuss",
    "reason reasoning infer hypothesize hypothesis model modeling modelling simulate formal",
    "rigorous rigorously mechanism mechanisms explain evaluate consequences counterfactual",
    "synthesize synthesise comprehensive thorough detailed nuanced novel propose framework",
    "limitations assumptions rigorous critique interpret interpretation",
)
STEP_WORDS = _words("first then next finally afterwards subsequently step steps stage phase")
CONSTRAINT_WORDS = _words(
    "must should exactly least most without ensure ensuring require requires requirement",
    "requirements constraint constraints only limit limited within under assume assuming given",
    "format formatted specific specifically handle handling edge cases scalable efficient",
    "production robust secure",
)
DOMAIN_WORDS = _words(
    "quantum entropy thermodynamic thermodynamics relativity hamiltonian lagrangian manifold",
    "manifolds stochastic bayesian regression gradient tensor tensors convolution transformer",
    "transformers neural genome genomic protein proteins enzyme enzymes pathway clinical",
    "pharmacology pharmacokinetics statute jurisdiction liability constitutional tort",
    "epistemology ontology metaphysics phenomenology hermeneutics macroeconomic",
    "microeconomic elasticity equilibrium distributed consensus throughput mpi openmp cuda gpu",
    "gpus slurm parallel cluster clusters scheduler kernel kernels compiler allocation",
    "fourier laplace bifurcation chaos nonlinear spectral ergodic measure hilbert banach",
    "cryptography cryptographic encryption byzantine paxos raft sharding replication",
    "photosynthesis mitochondria catalysis oxidation spectroscopy molecular orbital isotope",
    "inflation monetary fiscal geopolitical sociological anthropological postcolonial",
    "epidemiology immunology pathogenesis diagnosis prognosis therapeutic",
    "variational eigen finite element numerical discretization solver solvers",
    "heteroskedasticity causal inference estimator estimators likelihood posterior prior",
)
SIMPLE_OPENERS = (
    "what is ",
    "what's ",
    "what are ",
    "who is ",
    "who was ",
    "who wrote ",
    "who invented ",
    "who painted ",
    "when did ",
    "when was ",
    "where is ",
    "where was ",
    "define ",
    "translate ",
    "how many ",
    "name ",
    "list ",
    "spell ",
    "is it ",
)
SIMPLE_WORDS = _words("capital synonym antonym meaning definition stand abbreviation plural color")
# Conversational turns (acknowledgements, greetings, yes/no) need no strong model at all.
CHAT_WORDS = _words(
    "ok okay yes yeah yep no nope sure thanks thank great cool nice bye goodbye hi hello hey",
    "please perfect awesome alright right got good",
)

DIMENSIONS = (
    "length",
    "math",
    "code",
    "reasoning",
    "multistep",
    "constraints",
    "domain",
    "quantities",
    "negation",
    "choices",
    "compound",
    "simple",
)


def _saturate(hits: float, per_hit: float) -> float:
    """0 for no evidence, approaching 1 as evidence piles up."""
    return 1.0 - math.exp(-per_hit * hits)


def _scan_window(text: str) -> str:
    if len(text) <= SCAN_HEAD + SCAN_TAIL:
        return text
    return text[:SCAN_HEAD] + "\n" + text[-SCAN_TAIL:]


def features(text: str) -> dict[str, float]:
    """The explained dimensions of one prompt, each in [0, 1]."""
    scan = _scan_window(text).lower()
    words = _WORD.findall(scan)
    n_words = len(words)
    if len(scan) < len(text):  # scale to the whole text for the length dimension
        n_words = round(n_words * len(text) / len(scan))
    word_set = set(words)

    def hits(vocabulary: frozenset[str]) -> int:
        return len(word_set & vocabulary)

    numbers = len(_NUMBER.findall(scan))
    choices = [len(c) for c in _CHOICE.findall(scan)]
    math_syntax = len(_MATH_SYNTAX.findall(scan))
    code_syntax = len(_CODE_SYNTAX.findall(scan))
    code_block = 3 if "```" in scan else 0
    enumerations = len(_ENUMERATION.findall(scan))
    questions = scan.count("?")
    sentences = scan.count(". ") + scan.count("? ") + scan.count("! ") + 1
    long_words = sum(1 for w in words if len(w) >= 11)
    opener = scan.lstrip()
    # A greeting or "ok" opens a conversational turn only when little follows it.
    chat_turn = n_words <= 8 and bool(words) and words[0] in CHAT_WORDS
    simple_opener = chat_turn or any(opener.startswith(p) for p in SIMPLE_OPENERS)
    short = n_words <= 12

    return {
        "length": min(1.0, math.log1p(n_words) / math.log1p(400)),
        "math": _saturate(hits(MATH_WORDS) + 0.5 * math_syntax, 0.35),
        "quantities": _saturate(numbers, 0.2),
        "negation": _saturate(hits(_NEGATION), 0.7),
        "compound": _saturate(len(_CLAIM.findall(scan)), 0.5),
        "choices": min(1.0, sum(choices) / len(choices) / 60) if len(choices) >= 2 else 0.0,
        "code": _saturate(hits(CODE_WORDS) + 0.5 * code_syntax + code_block, 0.4),
        "reasoning": _saturate(hits(REASONING_WORDS), 0.6),
        "multistep": _saturate(
            hits(STEP_WORDS) + enumerations + max(0, questions - 1) + 0.3 * max(0, sentences - 2),
            0.35,
        ),
        "constraints": _saturate(hits(CONSTRAINT_WORDS), 0.45),
        "domain": _saturate(hits(DOMAIN_WORDS) + 0.5 * long_words, 0.4),
        "simple": (0.6 if simple_opener else 0.0)
        + (0.2 if short else 0.0)
        + (0.2 if hits(SIMPLE_WORDS) else 0.0),
    }


@dataclass(frozen=True)
class LinearHead:
    """A linear model over the dimensions plus the two ordinal cut points it was fitted with."""

    weights: dict[str, float]
    cut_low: float  # eta at the LOW|MEDIUM boundary
    cut_high: float  # eta at the MEDIUM|HIGH boundary

    def eta(self, dims: dict[str, float]) -> float:
        return sum(self.weights[name] * dims[name] for name in DIMENSIONS)

    def band(self, eta: float) -> Band:
        return Band.LOW if eta < self.cut_low else Band.MEDIUM if eta < self.cut_high else Band.HIGH

    def to_unit(self, eta: float, bands: Bands) -> float:
        """Map eta to [0, 1] so the fitted cut points land exactly on the configured bands.

        A logistic puts the cut points at 1/3 and 2/3; a monotone piecewise-linear stretch
        then moves those onto bands.medium and bands.high, keeping 0 and 1 fixed.
        """
        spread = max(self.cut_high - self.cut_low, 1e-6)
        centre = (self.cut_low + self.cut_high) / 2
        x = min(50.0, max(-50.0, (eta - centre) / spread))  # -0.5 / +0.5 at the cuts
        logistic = 1.0 / (1.0 + math.exp(-2 * math.log(2) * x))
        if logistic < 1 / 3:
            return logistic * 3 * bands.medium
        if logistic > 2 / 3:
            return bands.high + (logistic - 2 / 3) * 3 * (1 - bands.high)
        return bands.medium + (logistic - 1 / 3) * 3 * (bands.high - bands.medium)

    def as_dict(self) -> dict[str, object]:
        return {
            "weights": {k: round(v, 6) for k, v in self.weights.items()},
            "cut_low": round(self.cut_low, 6),
            "cut_high": round(self.cut_high, 6),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LinearHead:
        weights = data["weights"]
        assert isinstance(weights, dict)
        return cls(
            weights={name: float(weights[name]) for name in DIMENSIONS},
            cut_low=float(str(data["cut_low"])),
            cut_high=float(str(data["cut_high"])),
        )


@dataclass(frozen=True)
class HeuristicModel:
    """Two heads over the same dimensions: open requests and closed (multiple-choice) questions.

    Their difficulty shows in different places: an open request needs a strong model when it
    asks for depth (analysis, design, long multi-part work); a multiple-choice question does
    when it packs several claims, negations or long options, while its topic words say little.
    The open head is fitted on complexity labels, the closed head on weak/strong outcomes.
    """

    open: LinearHead
    closed: LinearHead

    def head_for(self, dims: dict[str, float]) -> tuple[str, LinearHead]:
        return ("closed", self.closed) if dims["choices"] > 0 else ("open", self.open)


@lru_cache(maxsize=1)
def load_model() -> HeuristicModel:
    text = resources.files("tierwise.scoring").joinpath("artifacts", WEIGHTS_FILE).read_text()
    data = json.loads(text)
    return HeuristicModel(
        open=LinearHead.from_dict(data["open"]), closed=LinearHead.from_dict(data["closed"])
    )


class HeuristicScorer(Scorer):
    """Sub-millisecond, explained scoring from lexical evidence."""

    name = "heuristic"

    def __init__(self, bands: Bands | None = None, model: HeuristicModel | None = None) -> None:
        super().__init__(bands)
        self.model = model or load_model()

    def score(self, request: ChatRequest) -> Score:
        return self.score_text(request.last_user_text)

    def score_text(self, text: str) -> Score:
        dims = features(text)
        kind, head = self.model.head_for(dims)
        value = head.to_unit(head.eta(dims), self.bands)
        drivers = list(_drivers(head, dims))
        if kind == "closed":
            drivers.append("closed-question")
        return Score(
            value=value,
            band=Band.of(value, self.bands),
            source=self.name,
            drivers=tuple(drivers),
            task_kind=task_kind(text, dims),
        )


def _drivers(head: LinearHead, dims: dict[str, float]) -> Iterable[str]:
    """The dimensions that moved the score most, with their direction."""
    contributions = sorted(
        ((head.weights[n] * dims[n], n) for n in DIMENSIONS), key=lambda c: -abs(c[0])
    )
    for value, name in contributions[:3]:
        if abs(value) >= 0.15:
            yield f"{name}{'+' if value > 0 else '-'}{abs(value):.2f}"
