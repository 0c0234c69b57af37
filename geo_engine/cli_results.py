"""``geo-engine results CAMPAIGN``: a campaign's results on a terminal, or as JSON or CSV.

The figures are :meth:`Engine.results <geo_engine.engine.Engine.results>`'s, the same as
``GET /v1/campaigns/{id}/results``; this module only lays them out.
"""

from __future__ import annotations

import csv
import sys

import click
import orjson

from .cli import _TIME, _db_option, _engine, _fails_cleanly

__all__ = ["results"]

CSV_COLUMNS = ("slice", "pushes", "exposed_devices", "exposed_visited", "exposed_rate",
               "exposed_low", "exposed_high", "control_devices", "control_visited", "control_rate",
               "control_low", "control_high", "lift", "lift_low", "lift_high", "relative_lift",
               "verdict", "visits", "median_push_to_visit_s")


@click.command()
@click.argument("campaign")
@_db_option
@click.option("--from", "start", type=_TIME, help="first moment of the period (RFC 3339; default "
              "30 days before --to)")
@click.option("--to", "end", type=_TIME, help="end of the period, excluded (default now)")
@click.option("--window-days", type=click.IntRange(1, 30), default=None,
              help="days after a push or holdout in which a visit counts (default 7)")
@click.option("--by", type=click.Choice(["store", "day"]), help="also each store's or day's figures")
@click.option("--json", "as_json", is_flag=True, help="the same JSON as the HTTP API")
@click.option("--csv", "as_csv", is_flag=True, help="one CSV row for the whole and one a store or day")
@_fails_cleanly
def results(campaign: str, db: str | None, start, end, window_days: int | None, by: str | None,
            as_json: bool, as_csv: bool) -> None:
    """Did the campaign bring people in: pushed against held-out devices' visit rates."""
    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    engine = _engine(db)
    try:
        out = engine.results(campaign, start, end, window_days, by)
    finally:
        engine.db.close()
    if as_json:
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerow(_csv_row("all", out))
        for s in out.get(f"by_{by}", []) if by else []:
            writer.writerow(_csv_row(s[by], s))
    else:
        click.echo(table(out, by))


def _csv_row(name: str, f: dict) -> list:
    e, c, lift = f["exposed"], f["control"], f["lift"]
    lo_hi = lambda pair: pair if pair else ["", ""]  # noqa: E731
    return [name, f.get("pushes", ""), e["devices"], e["converted"], _num(e["rate"]),
            *map(_num, lo_hi(e["interval"])), c["devices"], c["converted"], _num(c["rate"]),
            *map(_num, lo_hi(c["interval"])), _num(lift["absolute"]), *map(_num, lo_hi(lift["interval"])),
            _num(lift["relative"]), lift["verdict"], f["visits"], _num(f["median_push_to_visit_s"])]


def _num(x) -> str:
    return "" if x is None else f"{x:.6g}"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _span(pair) -> str:
    return "" if not pair else f"[{_pct(pair[0])}, {_pct(pair[1])}]"


def _points(x) -> str:
    return "-" if x is None else f"{100 * x:+.1f} pt"


def _duration(s) -> str:
    if s is None:
        return "-"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m} min" if h else f"{m} min"


VERDICTS = {"lift": "the offer brought more visits", "negative_lift": "fewer visits than without it",
            "no_detectable_lift": "no difference detected (the interval holds zero)",
            "insufficient_data": "too few devices for a verdict (30 a group at least)"}


def table(out: dict, by: str | None) -> str:
    """The results as a terminal reads them."""
    lines = [f"campaign {out['campaign_id']}: pushes and holdouts from {out['from']} to {out['to']}; "
             f"a visit counts within {out['window_days']} days ({out['visit_min_dwell_s']:g} s "
             "inside a store's geofence; days in UTC)", ""]
    lines.append(f"{'':<18}{'devices':>9}{'visited':>9}{'rate':>8}  95% interval")
    for name in ("exposed", "control"):
        g = out[name]
        lines.append(f"{name:<18}{g['devices']:>9,}{g['converted']:>9,}{_pct(g['rate']):>8}  "
                     f"{_span(g['interval'])}")
    lift = out["lift"]
    rel = "-" if lift["relative"] is None else f"{100 * lift['relative']:+.0f}%"
    lines.append(f"{'lift':<18}{'':>18}{_points(lift['absolute']):>9}  "
                 f"{_span(lift['interval'])}  relative {rel}")
    lines.append(f"verdict: {lift['verdict']} ({VERDICTS[lift['verdict']]})")
    any_e, any_c = out["exposed"]["any_store"], out["control"]["any_store"]
    any_lift = out["lift_any_store"]
    lines.append(f"any targeted store: exposed {_pct(any_e['rate'])}, control {_pct(any_c['rate'])}, "
                 f"lift {_points(any_lift['absolute'])} {_span(any_lift['interval'])}")
    lines.append(f"pushes {out['pushes']:,}, devices pushed {out['unique_devices']:,}, visits after a push "
                 f"{out['visits']:,}, median time to a visit {_duration(out['median_push_to_visit_s'])}")
    if out["in_both_groups"]:
        lines.append(f"{out['in_both_groups']:,} devices were both pushed and held out (the holdout "
                     "changed): left out of both groups")
    if out["windows_open"]:
        lines.append(f"{out['windows_open']:,} devices' windows have not ended yet: their visits may "
                     "still come")
    if by:
        lines += ["", f"by {by}:", f"{by:<20}{'pushes':>8}{'exposed':>9}{'rate':>8}{'control':>9}"
                  f"{'rate':>8}{'lift':>11}  95% interval        verdict"]
        for s in out[f"by_{by}"]:
            e, c, lf = s["exposed"], s["control"], s["lift"]
            lines.append(f"{s[by]:<20}{s['pushes']:>8,}{e['devices']:>9,}{_pct(e['rate']):>8}"
                         f"{c['devices']:>9,}{_pct(c['rate']):>8}{_points(lf['absolute']):>11}  "
                         f"{_span(lf['interval']):<20}{lf['verdict']}")
    rejections = out["rejections_by_day"]
    if rejections:
        reasons = sorted({r for d in rejections for r in d["reasons"]})
        lines += ["", "why not sent (campaign turned down, by day):",
                  f"{'day':<12}" + "".join(f"{r:>20}" for r in reasons)]
        for d in rejections:
            lines.append(f"{d['day']:<12}" + "".join(f"{d['reasons'].get(r, 0):>20,}" for r in reasons))
    return "\n".join(lines)
