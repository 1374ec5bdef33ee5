"""`percept leads`: what a salesperson asks of the leads service, as Rich tables."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.table import Table

from percept.cli.common import console, fail, settings_or_exit
from percept.leads.analytics import segment
from percept.leads.scoring import CHANNEL_NAMES, class_name, stage_name
from percept.leads.service import scoring_policy
from percept.leads.store import LeadStore
from percept.leads.training import Outcome, OutcomesError, read_outcomes, train
from percept.runtime.clients import bearer
from percept.v1 import leads_pb2, leads_pb2_grpc

app = typer.Typer(help="List, inspect, explain and erase leads (talks to the leads service).")

Server = Annotated[str, typer.Option("--server", help="leads service address")]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="PERCEPT_API_KEY", help="API key, if required")
]
DEFAULT_SERVER = "127.0.0.1:50054"


class LeadClass(StrEnum):
    hot = "hot"
    warm = "warm"
    cold = "cold"


COLOURS = {"hot": "bold red", "warm": "yellow", "cold": "blue"}


@contextmanager
def leads_stub(
    server: str, api_key: str | None
) -> Iterator[tuple[leads_pb2_grpc.LeadsStub, tuple[tuple[str, str], ...]]]:
    metadata = bearer(api_key)
    with grpc.insecure_channel(server) as channel:
        try:
            yield leads_pb2_grpc.LeadsStub(channel), metadata
        except grpc.RpcError as exc:
            fail(f"{exc.code().name}: {exc.details()}")


def contact(identity: object) -> str:
    parts = [getattr(identity, f) for f in ("phone", "email", "chat_session_id", "visitor_id")]
    return ", ".join(p for p in parts if p)


@app.command("list")
def list_leads(
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
    lead_class: Annotated[
        list[LeadClass] | None, typer.Option("--class", help="repeatable")
    ] = None,
    product: Annotated[str, typer.Option(help="product interest")] = "",
    min_score: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Leads, newest last, with class, score, stage and product interest."""
    classes = [leads_pb2.LeadClass.Value(f"LEAD_CLASS_{c.value.upper()}") for c in lead_class or []]
    request = leads_pb2.ListLeadsRequest(
        filter=leads_pb2.LeadFilter(classes=classes, product_interest=product, min_score=min_score),
        page_size=limit,
    )
    with leads_stub(server, api_key) as (stub, metadata):
        page = stub.ListLeads(request, metadata=metadata, timeout=10)
    table = Table(title=f"{len(page.leads)} leads")
    for column in ("lead", "class", "score", "stage", "product", "channels", "contact"):
        table.add_column(column)
    for lead in page.leads:
        name = class_name(lead.lead_class)
        table.add_row(
            lead.lead_id,
            f"[{COLOURS.get(name, '')}]{name}[/]",
            f"{lead.score:.2f}",
            stage_name(lead.stage),
            lead.product_interest or "-",
            ", ".join(CHANNEL_NAMES.get(c, "?") for c in lead.channels),
            contact(lead.identity),
        )
    console.print(table)


@app.command("show")
def show(
    lead_id: Annotated[str, typer.Argument(help="lead id (a merged lead's id works too)")],
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
) -> None:
    """One lead with its qualification and timeline."""
    with leads_stub(server, api_key) as (stub, metadata):
        lead = stub.GetLead(
            leads_pb2.GetLeadRequest(lead_id=lead_id, include_timeline=True),
            metadata=metadata,
            timeout=10,
        )
    name = class_name(lead.lead_class)
    console.print(
        f"[bold]{lead.lead_id}[/]  [{COLOURS.get(name, '')}]{name}[/] {lead.score:.2f}  "
        f"stage {stage_name(lead.stage)}  product {lead.product_interest or '-'}"
    )
    console.print(f"contact: {contact(lead.identity) or '-'}")
    for slot, value in sorted(lead.qualification.items()):
        console.print(f"  {slot}: {value}")
    table = Table(title="timeline")
    table.add_column("when (UTC)")
    table.add_column("what")
    for entry in lead.timeline:
        table.add_row(entry.occurred_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"), entry.summary)
    console.print(table)


@app.command("explain")
def explain(
    lead_id: Annotated[str, typer.Argument(help="lead id")],
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
) -> None:
    """Why the lead has its score: each feature's effect, largest first."""
    with leads_stub(server, api_key) as (stub, metadata):
        why = stub.ExplainScore(
            leads_pb2.ExplainScoreRequest(lead_id=lead_id), metadata=metadata, timeout=10
        )
    table = Table(
        title=f"{why.lead_id}: {class_name(why.lead_class)} {why.score:.2f} ({why.model})"
    )
    table.add_column("effect", justify="right")
    table.add_column("because the lead")
    for c in why.contributions:
        colour = "green" if c.contribution > 0 else "red"
        table.add_row(f"[{colour}]{c.contribution:+.2f}[/]", c.description)
    console.print(table)


@app.command("forget")
def forget(
    lead_id: Annotated[str, typer.Argument(help="lead id")],
    reason: Annotated[str, typer.Option(help="recorded in the audit entry")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
) -> None:
    """Erase a lead and everything known about it; keeps only an audit record."""
    if not yes:
        typer.confirm(f"Erase lead {lead_id} and all its data?", abort=True)
    with leads_stub(server, api_key) as (stub, metadata):
        done = stub.ForgetLead(
            leads_pb2.ForgetLeadRequest(lead_id=lead_id, reason=reason),
            metadata=metadata,
            timeout=30,
        )
    console.print(f"erased: {done.signals_erased} signals; audit record {done.audit_id}")


@app.command("train")
def train_command(
    outcomes: Annotated[
        Path | None,
        typer.Option(
            help="CSV: lead_id,outcome[,recorded_at]; without it, the outcomes recorded in "
            "the store (follow-ups completed as won or lost, CRM outcome signals)",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Fit the score on recorded won/lost outcomes; activate it only if it beats the prior.

    Runs against the leads database (PERCEPT_DATABASE_URL), like a migration job;
    running servers pick up an activated model within 30 s.
    """
    settings = settings_or_exit()
    store = LeadStore(settings.resolved_database_url, scoring_policy(settings))
    try:
        store.migrate()
        if outcomes is not None:
            recorded = read_outcomes(outcomes)
        else:
            recorded = [Outcome(lead, o == "won", at) for lead, o, at in store.recorded_outcomes()]
            if not recorded:
                raise OutcomesError(
                    "no outcomes recorded in the store yet: complete follow-ups as won or "
                    "lost, or give --outcomes FILE"
                )
        report = train(store, recorded)
    except OutcomesError as exc:
        fail(str(exc), 2)
    finally:
        store.close()
    m = report.metrics
    table = Table(
        title=f"model {report.model.version} on {m['held_out']} held-out of {m['leads']} leads"
    )
    for column in ("metric", "model", "prior"):
        table.add_column(column)
    table.add_row("ROC-AUC", f"{m['roc_auc']:.3f}", f"{m['prior_roc_auc']:.3f}")
    table.add_row(
        f"precision at top {m['k']}",
        f"{m['precision_at_k']:.2f}",
        f"{m['prior_precision_at_k']:.2f}",
    )
    table.add_row("Brier score (lower is better)", f"{m['brier']:.3f}", f"{m['prior_brier']:.3f}")
    console.print(table)
    calibration = Table(title="calibration on the held-out leads")
    for column in ("predicted win rate", "observed win rate", "leads"):
        calibration.add_column(column)
    for row in m["calibration"]:
        calibration.add_row(f"{row['predicted']:.2f}", f"{row['observed']:.2f}", str(row["leads"]))
    console.print(calibration)
    if m["unknown_leads"]:
        console.print(
            f"[yellow]{m['unknown_leads']} outcome rows name leads this store does not have[/]"
        )
    state = "[green]activated[/]" if report.activated else "[yellow]not activated[/]"
    console.print(f"{state}: {report.reason}")


@app.command("segments")
def segments_command() -> None:
    """Cluster the leads on their features and name each segment (runs against the database)."""
    settings = settings_or_exit()
    store = LeadStore(settings.resolved_database_url, scoring_policy(settings))
    try:
        store.migrate()
        ids, features = store.active_features()
        results = segment(ids, features, store.clock())
        store.save_segments(results)
    except ValueError as exc:
        fail(str(exc))
    finally:
        store.close()
    table = Table(title=f"{len(results)} segments of {len(ids)} leads")
    for column in ("segment", "leads", "stands out by", "id"):
        table.add_column(column)
    for r in sorted(results, key=lambda r: -len(r.lead_ids)):
        table.add_row(
            r.name, str(len(r.lead_ids)), ", ".join(r.dominant_features) or "-", r.segment_id
        )
    console.print(table)


@app.command("report")
def report_command(
    campaign: Annotated[list[str] | None, typer.Option(help="campaign id; repeatable")] = None,
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
) -> None:
    """Conversion per campaign (and segment) with 95 % intervals and uplift against control."""
    with leads_stub(server, api_key) as (stub, metadata):
        report = stub.CampaignReport(
            leads_pb2.CampaignReportRequest(campaign_ids=campaign or []),
            metadata=metadata,
            timeout=30,
        )
    table = Table(title="campaigns")
    for column in (
        "campaign",
        "segment",
        "leads",
        "won",
        "conversion",
        "95 % interval",
        "uplift vs control",
    ):
        table.add_column(column)
    for x in report.stats:
        table.add_row(
            x.campaign_id,
            x.segment or "all",
            str(x.leads),
            str(x.won),
            f"{x.conversion_rate:.1%}",
            f"{x.conversion_ci_low:.1%} - {x.conversion_ci_high:.1%}",
            f"{x.uplift:+.1%}" if x.has_control else "no control group",
        )
    console.print(table)


EXPORT_COLUMNS = (
    "lead_id",
    "class",
    "score",
    "stage",
    "product_interest",
    "channels",
    "phone",
    "email",
    "chat_session_id",
    "visitor_id",
    "crm_id",
    "qualification",
    "signal_count",
    "created_at",
    "updated_at",
)


@app.command("export")
def export_command(
    out: Annotated[Path, typer.Option(help="CSV file to write ('-' for standard output)")],
    lead_class: Annotated[
        list[LeadClass] | None, typer.Option("--class", help="repeatable")
    ] = None,
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
) -> None:
    """Every lead (or those of a class) as CSV, for a CRM import."""
    classes = [leads_pb2.LeadClass.Value(f"LEAD_CLASS_{c.value.upper()}") for c in lead_class or []]
    fh = sys.stdout if str(out) == "-" else out.open("w", newline="")
    written = 0
    try:
        writer = csv.writer(fh)
        writer.writerow(EXPORT_COLUMNS)
        with leads_stub(server, api_key) as (stub, metadata):
            token = ""
            while True:
                page = stub.ListLeads(
                    leads_pb2.ListLeadsRequest(
                        filter=leads_pb2.LeadFilter(classes=classes),
                        page_size=500,
                        page_token=token,
                    ),
                    metadata=metadata,
                    timeout=30,
                )
                for lead in page.leads:
                    i = lead.identity
                    writer.writerow(
                        [
                            lead.lead_id,
                            class_name(lead.lead_class),
                            f"{lead.score:.4f}",
                            stage_name(lead.stage),
                            lead.product_interest,
                            ";".join(CHANNEL_NAMES.get(c, "?") for c in lead.channels),
                            i.phone,
                            i.email,
                            i.chat_session_id,
                            i.visitor_id,
                            i.crm_id,
                            json.dumps(dict(lead.qualification), sort_keys=True),
                            lead.signal_count,
                            lead.created_at.ToDatetime().isoformat(),
                            lead.updated_at.ToDatetime().isoformat(),
                        ]
                    )
                    written += 1
                token = page.next_page_token
                if not token:
                    break
    finally:
        if fh is not sys.stdout:
            fh.close()
    if fh is not sys.stdout:
        console.print(f"wrote {written} leads to {out}")
