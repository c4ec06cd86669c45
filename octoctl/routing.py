"""Route free text (a symptom, an alert name, a procedure name) to the procedures that answer it.

Rules, in order, for each text:

1. a procedure name, role name, short name or alias (``cache``, ``db``, ``latency``, ``data-corruption``)
   selects that procedure (score 100);
2. an error message people paste (the catalog's ``messages``: Redis ``OOM command not allowed ...``, PostgreSQL
   ``sorry, too many clients already``, ``CrashLoopBackOff``, ``No appropriate arm found`` ...) is decisive
   (score 97): every procedure whose pattern matches;
3. an exact Prometheus alert name anywhere in the text is decisive (score 95): ``HighMemoryUsage`` selects
   every procedure that lists it;
4. a word that is close to a procedure name but not one (``cahce``) is a usage error (exit 2) that suggests the
   name: octoctl does not guess which procedure to run from a typo;
5. otherwise words are matched against each procedure's title, aliases, keywords, symptoms and alert names:
   token overlap weighted by rarity (a word only one procedure knows counts more), fuzzy token matching
   (rapidfuzz) for typos, plus the fuzzy similarity of the whole text to the closest symptom. Components the text
   names (``redis``, ``postgres``, an arm) weigh in: procedures that concern them gain, procedures that concern
   only other components lose. The best procedure is selected, with any other within a few points of it, when
   its score reaches THRESHOLD.

Text that selects nothing with confidence is not an error: the plan is then every procedure (``confident`` is
false), and ``octoctl fix`` applies only what needs no approval.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from octoctl.catalog import Catalog, Procedure, load_catalog, normalize_name
from octoctl.errors import ExitCode, OctoctlError

DIRECT_SCORE = 100.0
MESSAGE_SCORE = 97.0
ALERT_SCORE = 95.0
NEAR_NAME_SCORE = 90.0
MAX_TEXT_SCORE = 89.0
THRESHOLD = 40.0
TIE_MARGIN = 5.0
TOKEN_FUZZ_CUTOFF = 85.0
NAME_FUZZ_CUTOFF = 75.0
COMPONENT_BONUS = 10.0
OTHER_COMPONENT_FACTOR = 0.6

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
    confident: bool = True
    """False when a text selected no procedure with confidence: ``selected`` is then every procedure."""
    unmatched: list[str] = field(default_factory=list)


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

        messages_hit = False
        for p in self.catalog.procedures:
            pattern = p.message_match(text)
            if pattern is not None:
                messages_hit = True
                matches[p.name].score = MESSAGE_SCORE
                matches[p.name].reasons.append(f"message /{pattern}/")
        if messages_hit:
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

        near_name = self.near_name(text)
        if near_name is not None:
            p = self._names[near_name]
            matches[p.name].score = NEAR_NAME_SCORE
            matches[p.name].reasons.append(f"close to name {near_name!r}")
            return self._ranked(matches)

        tokens = tokenize(text)
        if not tokens:
            return self._ranked(matches)
        query = " ".join(tokens)
        named = self.catalog.components_in(text)
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
            score = MAX_TEXT_SCORE * (0.75 * coverage + 0.25 * similarity)
            match = matches[p.name]
            if named and p.components:
                if named & set(p.components):
                    score = min(MAX_TEXT_SCORE, score + COMPONENT_BONUS) if score > 0 else score
                    match.reasons.append("names " + ", ".join(sorted(named & set(p.components))))
                else:
                    score *= OTHER_COMPONENT_FACTOR
            match.score = round(score, 1)
            if words:
                match.reasons.append("words " + ", ".join(words))
            if phrase is not None and similarity >= 0.5:
                match.reasons.append(f"like {phrase[0]!r} ({phrase[1]:.0f}%)")
        return self._ranked(matches)

    @staticmethod
    def _ranked(matches: dict[str, Match]) -> list[Match]:
        return sorted(matches.values(), key=lambda m: (-m.score, m.procedure.rank))

    def near_name(self, text: str) -> str | None:
        """The procedure name (or alias) a one-word text misspells, if any."""
        key = normalize_name(text)
        if len(key) < 4 or key in self._names or len(tokenize(text)) > 1:
            return None
        near = process.extractOne(key, list(self._names), scorer=fuzz.ratio, score_cutoff=NAME_FUZZ_CUTOFF)
        return None if near is None else str(near[0])

    def select(self, text: str) -> list[Match]:
        """The matches one text selects, or [] when none is good enough; OctoctlError (exit 2) for a misspelt
        procedure name."""
        near = self.near_name(text)
        if near is not None and self.catalog.by_name(text) is None:
            raise OctoctlError(
                f"no procedure is named {text.strip()!r}; did you mean {near.replace('_', '-')!r}? "
                "`octoctl symptoms` lists the names",
                ExitCode.USAGE,
            )
        ranked = self.score(text)
        best = ranked[0]
        if best.score < THRESHOLD:
            return []
        if best.score >= ALERT_SCORE:
            return [m for m in ranked if m.score >= ALERT_SCORE]
        return [m for m in ranked if m.score >= max(THRESHOLD, best.score - TIE_MARGIN)]

    def closest(self, text: str) -> str:
        """The closest procedures to a text that selected none, for a message."""
        return ", ".join(f"{m.procedure.name} ({m.score:.0f})" for m in self._closest(text, self.score(text)))

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
        unmatched: list[str] = []
        for text in texts:
            selected = {m.procedure.name for m in self.select(text)}
            if not selected:
                unmatched.append(text)
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
        if unmatched:
            # a text nobody understood: look at everything rather than at the part that was understood
            return Plan(texts=texts, matches=matches, selected=list(self.catalog.procedures), confident=False,
                        unmatched=unmatched)
        return Plan(texts=texts, matches=matches, selected=self.catalog.in_rank_order(chosen))


def plan(texts: list[str], catalog: Catalog | None = None) -> Plan:
    """Ranked procedures for the texts, the selected ones in root-cause-first (rank) order."""
    return Router(catalog).plan(texts)
