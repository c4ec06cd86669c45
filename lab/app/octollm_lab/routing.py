"""Arm capabilities and the seed's ArmRouter scoring (pure logic, no I/O).

Scoring, per the seed (Task Routing Failures, Scenario B):
  * +10 for each arm keyword found in the goal (whole words; "break down" as a phrase),
  * +50 when the arm's domain appears in the goal,
  * an unhealthy arm scores 0,
  * an arm excluded by a constraint scores 0 (below).

Constraints are free text. A constraint that names arms, by name ("coder-arm", "coder")
or by domain ("security"), restricts routing to those arms; one that names none
(e.g. "finish within 5 minutes") does not restrict.

Routing (Scenario D): when the best score is below 10 the optional constraints are
dropped (only those containing "must" are kept) and the arms are scored again. Only then,
if every score is still 0, the task falls back to planner-arm with score 100. (The seed
applies the fallback inside score_arms, which makes its relaxation unreachable.)
"""

import re
from dataclasses import asdict, dataclass, field

FALLBACK_ARM = "planner-arm"
MIN_SCORE = 10

# name: (domain, keywords, port): the lab's six arms and their seed capabilities.
DEFAULT_ARMS = {
    "planner-arm": ("planning", ["plan", "decompose", "break down", "steps"], 8100),
    "executor-arm": ("execution", ["run", "execute", "command", "shell"], 8101),
    "coder-arm": ("coding", ["code", "python", "function", "write", "debug"], 8102),
    "judge-arm": ("validation", ["validate", "check", "verify", "judge"], 8103),
    "guardian-arm": ("security", ["security", "pii", "safety", "scan"], 8104),
    "retriever-arm": ("retrieval", ["search", "find", "retrieve", "lookup"], 8105),
}


@dataclass
class ArmCapability:
    name: str
    domain: str
    keywords: list = field(default_factory=list)
    url: str = ""
    version: str = ""

    @classmethod
    def from_dict(cls, data):
        missing = [key for key in ("name", "domain", "url") if not data.get(key)]
        if missing:
            raise ValueError("missing fields: " + ", ".join(missing))
        keywords = data.get("keywords") or []
        if isinstance(keywords, str):
            keywords = [item.strip() for item in keywords.split(",")]
        return cls(name=str(data["name"]), domain=str(data["domain"]).lower(),
                   keywords=[str(k).lower() for k in keywords if str(k).strip()],
                   url=str(data["url"]).rstrip("/"), version=str(data.get("version", "")))

    def to_dict(self):
        return asdict(self)


@dataclass
class RoutingDecision:
    scores: dict
    selected: str
    score: int
    fallback: bool
    relaxed: bool
    constraints: list

    def to_dict(self):
        return asdict(self)


def contains_phrase(text, phrase):
    return re.search(r"\b" + re.escape(phrase.lower()) + r"\b", text.lower()) is not None


def matched_keywords(goal, keywords):
    return [keyword for keyword in keywords if contains_phrase(goal, keyword)]


def constraint_targets(constraint, arms):
    """Names of the arms a constraint names (by name, short name or domain)."""
    targets = set()
    for arm in arms.values():
        short_name = arm.name[:-4] if arm.name.endswith("-arm") else arm.name
        if any(contains_phrase(constraint, word) for word in (arm.name, short_name, arm.domain)):
            targets.add(arm.name)
    return targets


def allowed_by_constraints(arm, constraints, arms):
    for constraint in constraints:
        targets = constraint_targets(constraint, arms)
        if targets and arm.name not in targets:
            return False
    return True


def relax_constraints(constraints):
    return [c for c in constraints if "must" in c.lower()]


class ArmRouter:
    def __init__(self, is_healthy=lambda name: True, fallback_arm=FALLBACK_ARM):
        self.is_healthy = is_healthy
        self.fallback_arm = fallback_arm

    def score_arms(self, arms, goal, constraints=()):
        """Score arms (a dict name -> ArmCapability) for a goal; no fallback here."""
        scores = {}
        for name, arm in arms.items():
            score = 10 * len(matched_keywords(goal, arm.keywords))
            if arm.domain and arm.domain in goal.lower():
                score += 50
            if not self.is_healthy(name) or not allowed_by_constraints(arm, constraints, arms):
                score = 0
            scores[name] = score
        return scores

    def route(self, arms, goal, constraints=()):
        constraints = list(constraints)
        scores = self.score_arms(arms, goal, constraints)
        relaxed = False
        if max(scores.values(), default=0) < MIN_SCORE and relax_constraints(constraints) != constraints:
            constraints = relax_constraints(constraints)
            scores = self.score_arms(arms, goal, constraints)
            relaxed = True
        fallback = all(score == 0 for score in scores.values())
        if fallback:
            scores[self.fallback_arm] = 100
        selected = max(scores, key=scores.get)
        return RoutingDecision(scores=scores, selected=selected, score=scores[selected],
                               fallback=fallback, relaxed=relaxed, constraints=constraints)
