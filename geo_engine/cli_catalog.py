"""``geo-engine campaigns ...`` and ``geo-engine stores list``: what an analyst needs without curl.

Campaigns go in from a JSON file (one object or a list, all validated before any is stored),
come out as the JSON they went in as, and are deleted by id; stores are listed a page at a time.
Each command is a thin call of one :class:`~geo_engine.engine.Engine` method.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli import _db_option, _engine, _fails_cleanly
from .errors import InvalidInput

__all__ = ["campaigns", "stores"]


@click.group()
def campaigns() -> None:
    """Put, list, get and delete campaigns (the format: docs/formats.md)."""


@campaigns.command(name="put")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_db_option
@_fails_cleanly
def put(file: Path, db: str | None) -> None:
    """Create or replace the campaigns of FILE (one object or a list): all or none."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{file}: cannot be read: {exc}") from None
    done = _engine(db).put_campaigns(text, str(file))
    click.echo(f"put {len(done)} campaign{'s' if len(done) != 1 else ''}: "
               f"{', '.join(c.id for c in done)}")


@campaigns.command(name="list")
@_db_option
@_fails_cleanly
def list_(db: str | None) -> None:
    """Every campaign: id, trigger, enabled, priority, the offer's title."""
    found = _engine(db).campaigns()
    if not found:
        click.echo("no campaigns (geo-engine campaigns put FILE adds some)")
        return
    click.echo(f"{'id':<24} {'trigger':<8} {'enabled':<8} {'priority':>8}  title")
    for c in found:
        click.echo(f"{c.id:<24} {c.trigger:<8} {'yes' if c.enabled else 'no':<8} {c.priority:>8}  "
                   f"{c.offer.get('title', '')}")


@campaigns.command(name="get")
@click.argument("campaign_id", metavar="ID")
@_db_option
@_fails_cleanly
def get(campaign_id: str, db: str | None) -> None:
    """Print a campaign as JSON, as it was put."""
    click.echo(json.dumps(_engine(db).campaign(campaign_id).body, indent=2, ensure_ascii=False))


@campaigns.command(name="delete")
@click.argument("campaign_id", metavar="ID")
@_db_option
@_fails_cleanly
def delete(campaign_id: str, db: str | None) -> None:
    """Delete a campaign (it is never offered again, from the next ping)."""
    _engine(db).delete_campaign(campaign_id)
    click.echo(f"deleted campaign {campaign_id}")


@click.group()
def stores() -> None:
    """List the stores."""


@stores.command(name="list")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="stores a page")
@click.option("--after", default=None, metavar="ID", help="the page after this store id")
@_db_option
@_fails_cleanly
def list_stores(limit: int, after: str | None, db: str | None) -> None:
    """Stores by id, a page at a time: id, name, lat, lon, tags."""
    page = _engine(db).store_page(limit, after)
    for s in page:
        click.echo(f"{s.id:<24} {s.name[:32]:<32} {s.lat:>10.5f} {s.lon:>11.5f}  {','.join(s.tags)}")
    if len(page) == limit:
        click.echo(f"(more: --after {page[-1].id})")
