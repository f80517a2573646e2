"""Deployment schedules from the catalog: one schedule per dataset, so a new dataset needs no deploy edit.

``deploy/prefect.yaml`` gives each scheduled deployment a default under ``definitions.schedules``
(a cron, its time zone, whether it is active, and ``stagger_minutes``: dataset *i* starts that
many minutes times *i* later, so nightly runs do not pile up). The catalog may override the
default for every dataset (top-level ``schedules:``) or for one (``schedule:`` in its entry,
``false`` for none). :func:`expand_project` writes the per-dataset schedules into the project
that ``deploy/setup.py`` hands to ``prefect deploy``.
"""

from __future__ import annotations

import copy
from typing import Any

from segpipe.data.catalog import Catalog, Schedule, ScheduleSpec


def dataset_schedules(catalog: Catalog, deployment: str, default: dict[str, Any]) -> list[dict[str, Any]]:
    """Prefect schedules of ``deployment``, one per catalog dataset that has one.

    Args:
        catalog: The loaded catalog.
        deployment: Deployment name (``nightly``, ``refresh``, ...).
        default: ``{cron, timezone, active, stagger_minutes}`` from ``deploy/prefect.yaml``.
    """
    stagger = int(default.get("stagger_minutes", 0))
    base: ScheduleSpec = Schedule(**{k: v for k, v in default.items() if k != "stagger_minutes"})
    if deployment in catalog.schedules:
        base, stagger = catalog.schedules[deployment], 0
    schedules = []
    for index, name in enumerate(catalog.names()):
        spec = catalog.entries[name].schedule.get(deployment)
        offset = 0 if spec is not None else index * stagger
        spec = base if spec is None else spec
        if spec is False:
            continue
        schedule = Schedule(cron=spec) if isinstance(spec, str) else spec
        schedules.append(
            {
                "cron": shifted(schedule.cron, offset),
                "timezone": schedule.timezone,
                "active": schedule.active,
                "slug": f"{deployment}-{name}",
                "parameters": {"dataset": name},
            }
        )
    return schedules


def shifted(cron: str, minutes: int) -> str:
    """``cron`` ``minutes`` later, when its minute and hour are plain numbers (else unchanged)."""
    minute, hour, *rest = cron.split()
    if not minutes or not (minute.isdigit() and hour.isdigit()):
        return cron
    total = int(hour) * 60 + int(minute) + minutes
    return " ".join([str(total % 60), str(total // 60 % 24), *rest])


def expand_project(project: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    """A copy of a ``prefect.yaml`` project with each defaulted deployment's schedules per dataset.

    Raises:
        CatalogError: The catalog schedules a deployment the project does not schedule (a typo:
            its schedule would be ignored, the default taken).
    """
    project = copy.deepcopy(project)
    defaults = (project.get("definitions") or {}).get("schedules") or {}
    _check_names(catalog, sorted(defaults))
    for deployment in project["deployments"]:
        if deployment["name"] in defaults:
            deployment["schedules"] = dataset_schedules(catalog, deployment["name"], defaults[deployment["name"]])
    return project


def _check_names(catalog: Catalog, scheduled: list[str]) -> None:
    """Refuse a catalog whose ``schedules:`` or an entry's ``schedule:`` names no scheduled deployment."""
    from segpipe.errors import CatalogError

    where = [("schedules", catalog.schedules)] + [(f"dataset {name!r}: schedule", catalog.entry(name).schedule) for name in catalog.names()]
    for label, given in where:
        unknown = sorted(set(given) - set(scheduled))
        if unknown:
            raise CatalogError(f"{catalog.path}: {label}: {', '.join(map(repr, unknown))} names no scheduled deployment "
                               f"of deploy/prefect.yaml ({', '.join(scheduled) or 'none'})")

