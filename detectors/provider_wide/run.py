"""Run the provider-wide rules over ledger events of every account: the stage's pure core.

`Stage` holds the whole state as plain JSON, keyed the way streams/provider_stage.py snapshots
it to its compacted topic:
- `p|<provider>`: `{"det": {rule: its state}, "open": {alert_id: latest version}, "swept": ms,
  "days": ...}`, one record per provider (its principals and sessions live inside its rules'
  states; `days`: its days across accounts, kept while a behaviour model with a day forest is in
  force, detectors/behaviour/scoring.py);
- `s|sigma`: the Sigma rules' correlation windows and open alerts, when the stage runs Sigma
  rules (`sigma`, detectors/sigma/);
- `a|<account>`: the account's authorization (grants, approvals, policy), folded from the same
  ledger, so rules can ask `ctx.covering` and `ctx.declared_network` as account rules do, plus
  `approvers`: who issued its authorization events, and how often.

`observe(event)` folds one event and returns the alert versions it changed (`pipeline.alert.fold`:
the same deterministic `alert_id` = detector | key | window). `dirty` names the keys changed
since the last `take_dirty()`, which the stage writes at its next checkpoint. Used the same way by
the stage, by the fixture-case tests and by `partnerwatch evaluate`'s in-process replay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import Context, DetectFn
from detectors.behaviour.scoring import provider_days
from detectors.provider_wide import ACTIONS, ALL, provider_of
from detectors.sigma.evaluate import SigmaRules
from detectors.windows import epoch_ms
from pipeline import authorization
from pipeline.alert import Alert, Finding, alert_id, closed_alerts, fold
from pipeline.config import DetectionConfig
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel

PROVIDER = "p|"
ACCOUNT = "a|"
#: the Sigma rules' state: their correlation windows and open alerts
SIGMA = "s|sigma"
_HOUR_MS = 3_600_000
#: Approvers remembered per account (the least active dropped first).
MAX_APPROVERS = 100


#: The rules one event goes through, in `ALL`'s order.
Plan = tuple[tuple[str, DetectFn], ...]
#: Plans by action, built once per action (bounded, in case of unexpected action names), for the
#: rules in `_PLANNED` (`ALL` when built; a benchmark may swap `ALL` for timed rules).
_PLANS: dict[str, Plan] = {}
_PLANNED: list[Plan] = []
MAX_PLANS = 4096


def plan(action: str) -> Plan:
    """The rules of `ALL` that look at `action` (detectors/provider_wide/__init__.py
    `ACTIONS`): the others would find nothing and leave their state as it was."""
    rules = ALL
    if not _PLANNED or _PLANNED[0] is not rules:
        _PLANS.clear()
        _PLANNED[:] = [rules]
    found = _PLANS.get(action)
    if found is None:
        found = tuple(
            (name, rule)
            for name, rule in rules
            if name not in ACTIONS or action.startswith(ACTIONS[name])
        )
        if len(_PLANS) < MAX_PLANS:
            _PLANS[action] = found
    return found


class Stage:
    """Provider-wide detection state and the rules over it; `states` may come from a snapshot."""

    def __init__(
        self,
        config: DetectionConfig,
        states: dict[str, Any] | None = None,
        sigma: SigmaRules | None = None,
        model: BehaviourModel | None = None,
    ) -> None:
        self.config = config
        self.states: dict[str, Any] = states if states is not None else {}
        self.dirty: set[str] = set()
        #: Sigma rules run over every event (PW_RULES_DIR; detectors/sigma), or None
        self.sigma = sigma
        #: The behaviour model in force (its day forest scores each provider's days across
        #: accounts), or None
        self.model = model

    def findings(self, event: Event) -> list[Finding]:
        """Fold `event` into the state and return what the provider-wide rules (and the Sigma
        rules, when the stage runs some) found."""
        return [f for _, f in self._found(event, provider_of(event))]

    def _found(self, event: Event, provider: str | None) -> list[tuple[str, Finding]]:
        """(state key whose open alerts the finding folds into, finding) for `event`, about
        `provider` (`provider_of(event)`)."""
        states = self.states
        account = ACCOUNT + event["account_id"]
        if event["action"] in authorization.AUTHORIZATION_ACTIONS:
            auth = states.get(account)
            if auth is None:
                auth = states[account] = authorization.empty()
            if authorization.apply(auth, event):
                self.dirty.add(account)
        found: list[tuple[str, Finding]] = []
        if provider is not None or self.sigma is not None:
            ctx = Context(auth=states.get(account) or authorization.empty(), config=self.config)
            if provider is not None:
                self._provider_rules(event, PROVIDER + provider, ctx, found)
            if self.sigma is not None:
                sigma = states.get(SIGMA)
                if sigma is None:
                    sigma = states[SIGMA] = {"det": {}}
                for f in self.sigma.findings(event, sigma["det"], ctx):
                    found.append((SIGMA, f))
                self.dirty.add(SIGMA)
        self._count_approver(event)
        return found

    def _provider_rules(
        self, event: Event, key: str, ctx: Context, found: list[tuple[str, Finding]]
    ) -> None:
        """Run the rules (and the day forest) over the provider's state `key`, into `found`."""
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = {"det": {}}
        self.dirty.add(key)
        det: dict[str, Any] = state["det"]
        # Only the rules that look at the event's action (`plan`), in `ALL`'s order. A rule
        # without state gets an empty dict, kept only if it put something in it (at the end of
        # `det`, where inserting it before the call put it too: a rule sees its own state only).
        spare: dict[str, Any] = {}
        for name, rule in plan(event["action"]):
            own = det.get(name)
            if own is None:
                own = spare
            for f in rule(event, own, ctx):
                found.append((key, f))
            if own is spare:
                if spare:
                    det[name] = spare
                    spare = {}
            elif not own:
                del det[name]
        model = self.model
        if model is not None and model.day is not None:
            days = state.setdefault("days", {})
            for f in provider_days(days, event, ctx, model):
                found.append((key, f))

    def observe(self, event: Event) -> list[Alert]:
        """Fold `event`, and its findings into the open alerts of the state they came from;
        return the alert versions that changed (to publish), oldest finding first."""
        provider = provider_of(event)
        states = self.states
        changed = []
        for key, finding in self._found(event, provider):
            opened: dict[str, Alert] = states[key].setdefault("open", {})
            alert = fold_finding(opened, finding, event)
            if alert is not None:
                changed.append(alert)
        # the states whose open alerts may close: the provider's (made by `_found`) and Sigma's
        if provider is not None:
            self._close(states[PROVIDER + provider], event)
        sigma = states.get(SIGMA)
        if sigma is not None:
            self._close(sigma, event)
        return changed

    def _count_approver(self, event: Event) -> None:
        """Who manages the account's access: the seller principals that issued its successful
        authorization events, with counts (`approvers` in the account's authorization), counted
        after the rules saw the event (grant_then_abuse asks whether its issuer was known)."""
        actor = event["actor"]
        if (
            event["action"] not in authorization.AUTHORIZATION_ACTIONS
            or event["outcome"] != "success"
            or actor["type"] == "provider"
        ):
            return
        key = ACCOUNT + event["account_id"]
        approvers: dict[str, int] = self.states.setdefault(key, authorization.empty()).setdefault(
            "approvers", {}
        )
        approvers[actor["principal_id"]] = approvers.get(actor["principal_id"], 0) + 1
        while len(approvers) > MAX_APPROVERS:
            del approvers[min(approvers, key=lambda a: (approvers[a], a))]
        self.dirty.add(key)

    def _close(self, state: dict[str, Any], event: Event) -> None:
        """Once an event-time hour per provider, drop alerts without new evidence for
        `OPEN_DAYS` (a repeat after that opens a new alert version with count 1)."""
        opened: dict[str, Alert] | None = state.get("open")
        now = epoch_ms(event["occurred_at"])
        if now >= state.get("swept", 0) + _HOUR_MS:
            state["swept"] = now
            if opened:
                last_seen = {k: a["last_seen"] for k, a in opened.items()}
                for key in closed_alerts(last_seen, event["occurred_at"]):
                    del opened[key]
        if not opened:
            state.pop("open", None)

    def take_dirty(self) -> dict[str, Any]:
        """The changed keys and their current values (None: gone), and forget them as dirty."""
        out = {key: self.states.get(key) for key in sorted(self.dirty)}
        self.dirty.clear()
        return out


def fold_finding(opened: dict[str, Alert], finding: Finding, event: Event) -> Alert | None:
    """Fold one finding into the open alerts; the new version, or None if it changed nothing
    (an event already named as evidence)."""
    key = alert_id(finding.detector, finding.key, finding.window)
    before = opened.get(key)
    alert = fold(before, finding, event)
    if alert is before:
        return None
    opened[key] = alert
    return alert
