"""Care-plan drafts kept on this server: the store (SQLite or PostgreSQL, see smart_app.storage), JSON
round trip, and the editor form parsed.

The editor stores whatever the user typed BEFORE any write is attempted (see smart_app.careplan.views).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from rules.careplan_validation import TEXT_SECTIONS, ActivityDraft, CarePlanDraft, GoalDraft, Problem
from smart_app.context import LaunchContext
from smart_app.storage import Database, as_database

MAX_ROWS = 30


class DraftStore:
    """One kept draft per (FHIR server, patient, user or browser session); JSON in the app's database."""

    def __init__(self, db: Database | Path | str) -> None:
        self.db = as_database(db)
        self.path = getattr(self.db, "path", None)
        self.db.migrate("careplan_drafts")  # tables: storage/migrations/versions/careplan_drafts_*.py

    def put(self, key: str, payload: dict[str, Any], state: str, error: str = "") -> None:
        with self.db.transaction() as tx:
            tx.run(
                "INSERT INTO drafts (key, payload, state, error, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET payload=excluded.payload, state=excluded.state, "
                "error=excluded.error, updated=excluded.updated",
                (key, json.dumps(payload), state, error, time.time()),
            )

    def get(self, key: str) -> tuple[dict[str, Any], str, str, float] | None:
        with self.db.read() as tx:
            row = tx.one("SELECT payload, state, error, updated FROM drafts WHERE key=?", (key,))
        return (json.loads(row[0]), row[1], row[2], row[3]) if row else None

    def delete(self, key: str) -> None:
        with self.db.transaction() as tx:
            tx.run("DELETE FROM drafts WHERE key=?", (key,))


def draft_to_json(d: CarePlanDraft, plan_key: str) -> dict[str, Any]:
    return {
        "plan_key": plan_key,
        "patient_id": d.patient_id,
        "conditions": list(d.conditions),
        "sections": d.sections,
        "author": d.author,
        "period_start": d.period_start.isoformat(),
        "plan_id": d.plan_id,
        "version": d.version,
        "problem_labels": d.problem_labels,
        "goals": [
            {
                "description": g.description,
                "measure": g.measure,
                "target": g.target,
                "due": g.due.isoformat() if g.due else None,
                "goal_id": g.goal_id,
                "measure_code": g.measure_code,
                "source": g.source,
            }
            for g in d.goals
        ],
        "activities": [
            {"description": a.description, "performer": a.performer, "source": a.source} for a in d.activities
        ],
    }


def draft_from_json(data: dict[str, Any]) -> tuple[CarePlanDraft, str]:
    goals = tuple(
        GoalDraft(
            g["description"],
            g["measure"],
            g["target"],
            date.fromisoformat(g["due"]) if g.get("due") else None,
            g.get("goal_id"),
            g.get("measure_code", ""),
            g.get("source", ""),
        )
        for g in data["goals"]
    )
    acts = tuple(
        ActivityDraft(a["description"], a["performer"], a.get("source", "")) for a in data["activities"]
    )
    draft = CarePlanDraft(
        patient_id=data["patient_id"],
        conditions=tuple(data["conditions"]),
        sections=dict(data["sections"]),
        goals=goals,
        activities=acts,
        author=data["author"],
        period_start=date.fromisoformat(data["period_start"]),
        plan_id=data.get("plan_id"),
        version=data.get("version"),
        problem_labels=dict(data.get("problem_labels") or {}),
    )
    return draft, data["plan_key"]


# --------------------------------------------------------------------------- form parsing


def _date(raw: str, field: str, label: str, problems: list[Problem]) -> date | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        problems.append(Problem(field, f"{label}: \u201c{raw[:20]}\u201d is not a date (use YYYY-MM-DD)."))
        return None


def _row_count(form: Any, field: str) -> int:
    """How many goal/intervention rows the form says it has (0..MAX_ROWS; junk counts as 0)."""
    raw = str(form.get(field, "") or "").strip()
    return min(int(raw), MAX_ROWS) if raw.isdigit() else 0


def draft_from_form(form: Any, ctx: LaunchContext, today: date) -> tuple[CarePlanDraft, str, list[Problem]]:
    """The draft exactly as typed (empty goal/intervention rows dropped) and any unreadable-input problems."""
    problems: list[Problem] = []
    goals: list[GoalDraft] = []
    for i in range(1, _row_count(form, "goal_count") + 1):
        get = lambda name, i=i: str(form.get(f"goal-{i}-{name}", "")).strip()  # noqa: E731
        if get("remove"):
            continue
        due = _date(get("due"), f"goal-{len(goals) + 1}-due", f"Goal {len(goals) + 1}", problems)
        if not any((get("description"), get("measure"), get("target"), get("due"))):
            continue
        goals.append(
            GoalDraft(
                get("description"),
                get("measure"),
                get("target"),
                due,
                get("id") or None,
                get("measure_code"),
                get("source"),
            )
        )
    acts: list[ActivityDraft] = []
    for i in range(1, _row_count(form, "activity_count") + 1):
        get = lambda name, i=i: str(form.get(f"activity-{i}-{name}", "")).strip()  # noqa: E731
        if get("remove") or not (get("description") or get("performer")):
            continue
        acts.append(ActivityDraft(get("description"), get("performer"), get("source")))
    start = _date(str(form.get("period_start", "")), "period_start", "Plan start", problems) or today
    labels = {}
    with contextlib.suppress(ValueError):
        labels = json.loads(str(form.get("problem_labels", "{}")))
    draft = CarePlanDraft(
        patient_id=ctx.patient_id,
        conditions=tuple(
            dict.fromkeys(str(c) for c in form.getlist("problems") if str(c).startswith("Condition/"))
        ),
        sections={
            code: str(form.get(f"sec-{code}", "")).replace("\r\n", "\n") for code, _, _ in TEXT_SECTIONS
        },
        goals=tuple(goals),
        activities=tuple(acts),
        author=str(form.get("author", "")).strip(),
        period_start=start,
        plan_id=str(form.get("plan_id", "")).strip() or None,
        version=str(form.get("version", "")).strip() or None,
        problem_labels=labels if isinstance(labels, dict) else {},
    )
    plan_key = str(form.get("plan_key", "")).strip() or str(uuid.uuid4())
    return draft, plan_key, problems
