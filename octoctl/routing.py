"""Route free text (a symptom, an alert name, a procedure name) to the procedures that answer it.

Rules, in order, for each text:

1. a procedure name, role name, short name or alias (``cache``, ``db``, ``latency``, ``data-corruption``)
   selects that procedure (score 100);
2. an exact Prometheus alert name anywhere in the text is decisive (score 95): ``HighMemoryUsage`` selects
   every procedure that lists it;
3. otherwise words are matched against each procedure's title, aliases, keywords, symptoms and alert names:
   token overlap weighted by rarity (a word only one procedure knows counts more), fuzzy token matching
   (rapidfuzz) for typos, plus the fuzzy similarity of the whole text to the closest symptom. The best
   procedure is selected, with any other within a few points of it.

A text that reaches no procedure is a usage error (exit 2) that lists the closest matches.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from octoctl.catalog import Catalog, Procedure, load_catalog, normalize_name
from octoctl.errors import ExitCode, OctoctlError

DIRECT_SCORE = 100.0
ALERT_SCORE = 95.0
NEAR_NAME_SCORE = 90.0
MAX_TEXT_SCORE = 89.0
THRESHOLD = 40.0
TIE_MARGIN = 5.0
TOKEN_FUZZ_CUTOFF = 85.0
NAME_FUZZ_CUTOFF = 80.0

STOPWORDS = frozenset(
    [
        "a", "an", "the", "from", "to", "of", "in", "on", "for", "is", "are", "be", "been", "being", "at", "by",
        "with", "and", "or", "our", "my", "we", "i", "it", "its", "this", "that", "these", "those", "there",
        "very", "lot", "lots", "some", "seems", "seem", "getting", "get", "got", "keeps", "keep", "see", "seeing",
        "saw", "has", "have", "had", "after", "since", "when", "while", "than", "then", "about", "into", "over",
        "under", "again", "still", "just",
    ]
)

WEIGHTS = {"name": 1.0, "title": 1.0, "keyword": 1.0, "symptom": 0.8, "alert": 0.6}


def split_camel(text: str) -> str:
    """``CacheMissRate`` -> ``Cache Miss Rate``; ``PostgreSQLDown`` -> ``Postgre SQL Down``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", text)


def stem(token: str) -> str:
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", split_camel(text).lower())
    return [stem(w) for w in words if w not in STOPWORDS]


@dataclass
class Match:
    """How well one procedure answers the texts."""

    procedure: Procedure
    score: float
    reasons: list[str] = field(default_factory=list)
    selected: bool = False


@dataclass
class Plan:
    """The procedures to run, in rank order, and how every procedure scored."""

    texts: list[str]
    matches: list[Match]
    selected: list[Procedure]


class Router:
    """Scores procedures of a catalog against text."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or load_catalog()
        self._vocab: dict[str, dict[str, tuple[float, str]]] = {}
        self._phrases: dict[str, list[str]] = {}
        self._names: dict[str, Procedure] = {}
        for p in self.catalog.procedures:
            vocab: dict[str, tuple[float, str]] = {}

            def add(text: str, kind: str, vocab: dict[str, tuple[float, str]] = vocab) -> None:
                for token in tokenize(text):
                    if vocab.get(token, (0.0, ""))[0] < WEIGHTS[kind]:
                        vocab[token] = (WEIGHTS[kind], kind)

            for word in (p.name, p.short, *p.aliases):
                add(word.replace("_", " ").replace("-", " "), "name")
                self._names[normalize_name(word)] = p
            add(p.title, "title")
            for keyword in p.keywords:
                add(keyword, "keyword")
            for symptom in p.symptoms:
                add(symptom, "symptom")
            for alert in p.alerts:
                add(alert, "alert")
            self._vocab[p.name] = vocab
            self._phrases[p.name] = [
                " ".join(tokenize(t)) for t in (p.title, *p.symptoms, *p.keywords) if tokenize(t)
            ]
        n = len(self.catalog.procedures)
        df: dict[str, int] = {}
        for vocab in self._vocab.values():
            for token in vocab:
                df[token] = df.get(token, 0) + 1
        self._idf = {token: 1.0 + math.log(n / count) for token, count in df.items()}

    # --- one text ---------------------------------------------------------------------------------

    def score(self, text: str) -> list[Match]:
        """Every procedure with its score for one text, best first."""
        matches = {p.name: Match(p, 0.0) for p in self.catalog.procedures}
        key = normalize_name(text)
        direct = self._names.get(key)
        if direct is not None:
            matches[direct.name].score = DIRECT_SCORE
            matches[direct.name].reasons.append(f"name {text.strip()!r}")
            return self._ranked(matches)

        alerts_hit = False
        for word in re.findall(r"[A-Za-z0-9]+", text):
            for p in self.catalog.by_alert(word):
                alerts_hit = True
                matches[p.name].score = ALERT_SCORE
                alert = next(a for a in p.alerts if a.lower() == word.lower())
                matches[p.name].reasons.append(f"alert {alert}")
        if alerts_hit:
            return self._ranked(matches)

        if len(key) >= 4:
            near = process.extractOne(key, list(self._names), scorer=fuzz.ratio, score_cutoff=NAME_FUZZ_CUTOFF)
            if near is not None:
                p = self._names[near[0]]
                matches[p.name].score = NEAR_NAME_SCORE
                matches[p.name].reasons.append(f"close to name {near[0]!r}")
                return self._ranked(matches)

        tokens = tokenize(text)
        if not tokens:
            return self._ranked(matches)
        query = " ".join(tokens)
        for p in self.catalog.procedures:
            vocab = self._vocab[p.name]
            total = covered = 0.0
            words: list[str] = []
            for token in tokens:
                if token in vocab:
                    weight, _kind = vocab[token]
                    idf = self._idf[token]
                    total += idf
                    covered += idf * weight
                    words.append(token)
                    continue
                candidates = [t for t in vocab if len(t) >= 4] if len(token) >= 4 else []
                near = process.extractOne(token, candidates, scorer=fuzz.ratio, score_cutoff=TOKEN_FUZZ_CUTOFF)
                if near is not None:
                    weight, _kind = vocab[near[0]]
                    idf = self._idf[near[0]]
                    total += idf
                    covered += idf * weight * near[1] / 100.0
                    words.append(f"{token}~{near[0]}")
                else:
                    total += self._idf.get(token, 1.0)
            coverage = covered / total if total else 0.0
            phrase = process.extractOne(query, self._phrases[p.name], scorer=fuzz.token_sort_ratio)
            similarity = phrase[1] / 100.0 if phrase is not None else 0.0
            if not words:
                similarity *= 0.5
            score = round(MAX_TEXT_SCORE * (0.75 * coverage + 0.25 * similarity), 1)
            match = matches[p.name]
            match.score = score
            if words:
                match.reasons.append("words " + ", ".join(words))
            if phrase is not None and similarity >= 0.5:
                match.reasons.append(f"like {phrase[0]!r} ({phrase[1]:.0f}%)")
        return self._ranked(matches)

    @staticmethod
    def _ranked(matches: dict[str, Match]) -> list[Match]:
        return sorted(matches.values(), key=lambda m: (-m.score, m.procedure.rank))

    def select(self, text: str) -> list[Match]:
        """The matches one text selects; OctoctlError (exit 2) when none is good enough."""
        ranked = self.score(text)
        best = ranked[0]
        if best.score < THRESHOLD:
            closest = ", ".join(f"{m.procedure.name} ({m.score:.0f})" for m in self._closest(text, ranked))
            raise OctoctlError(
                f"no procedure matches {text.strip()!r}; closest: {closest}. "
                "`octoctl symptoms` lists the known symptoms, alerts and names",
                ExitCode.USAGE,
            )
        if best.score >= ALERT_SCORE:
            return [m for m in ranked if m.score >= ALERT_SCORE]
        return [m for m in ranked if m.score >= max(THRESHOLD, best.score - TIE_MARGIN)]

    def _closest(self, text: str, ranked: list[Match], count: int = 3) -> list[Match]:
        """Best scores first; when nothing scored, the names that look most like the text."""
        if ranked[0].score > 0:
            return [m for m in ranked if m.score > 0][:count]
        by_name = {m.procedure.name: m for m in ranked}
        found = process.extract(normalize_name(text), list(self._names), scorer=fuzz.WRatio, limit=10)
        out: list[Match] = []
        for name, _similarity, _index in found:
            match = by_name[self._names[name].name]
            if match not in out:
                out.append(match)
        return out[:count] or ranked[:count]

    # --- several texts ----------------------------------------------------------------------------

    def plan(self, texts: list[str]) -> Plan:
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise OctoctlError("say what is wrong: a symptom, an alert name or a procedure name", ExitCode.USAGE)
        best: dict[str, Match] = {}
        chosen: list[Procedure] = []
        for text in texts:
            selected = {m.procedure.name for m in self.select(text)}
            for match in self.score(text):
                name = match.procedure.name
                current = best.setdefault(name, Match(match.procedure, 0.0))
                if match.score > 0 and match.reasons:
                    if len(texts) > 1:
                        current.reasons.append(f"{text.strip()!r}: " + ", ".join(match.reasons))
                    else:
                        current.reasons += match.reasons
                current.score = max(current.score, match.score)
                if name in selected:
                    current.selected = True
                    chosen.append(match.procedure)
        matches = sorted(best.values(), key=lambda m: (-m.score, m.procedure.rank))
        return Plan(texts=texts, matches=matches, selected=self.catalog.in_rank_order(chosen))


def plan(texts: list[str], catalog: Catalog | None = None) -> Plan:
    """Ranked procedures for the texts, the selected ones in root-cause-first (rank) order."""
    return Router(catalog).plan(texts)
