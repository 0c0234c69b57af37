"""Before a scoring run writes anything: is it the run the analyst meant? (SPEC 7)

Every way a run could finish with exit 0 and a useless file is refused here first, with one
sentence: no database or no stores in it, an output folder or format that cannot be written, an
option out of range, a file whose delimiter or decimal comma cannot be read, no column to locate
customers by. What it could work out (the delimiter, the decimal comma, which columns hold the
coordinates and the customer id) comes back as a :class:`Plan` and is said once on the terminal.

It reads the first few kilobytes of the input and the database's store count; it scores nothing.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .db import is_postgres_url
from .errors import InvalidInput

__all__ = ["LAT_NAMES", "LON_NAMES", "OUTPUT_FORMATS", "Plan", "check_database", "plan_run"]

LAT_NAMES = ("lat", "latitude", "y")
LON_NAMES = ("lon", "lng", "long", "longitude", "x")
ID_NAMES = ("id", "customer_id", "customerid", "customer", "client_id", "clientid", "user_id")
OUTPUT_FORMATS = (".csv", ".parquet", ".geojson", ".gpkg")
_SAMPLE_BYTES = 64 << 10
_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+\s*$")


@dataclass
class Plan:
    """What the run will read and how: the CSV's delimiter and decimal mark, the columns that
    hold the coordinates and the id, and the sentences to say about them."""

    lat_col: str | None = None
    lon_col: str | None = None
    id_col: str | None = None
    delimiter: str = ","
    decimal: str = "."
    notes: list[str] = field(default_factory=list)


def check_database(path: str | Path) -> None:
    """A scoring run needs a database with stores: one that does not exist is not created."""
    if str(path) == ":memory:" or is_postgres_url(str(path)):
        return  # a server's database: opening it says whether it is there
    if not Path(path).is_file():
        raise InvalidInput(f"no database at {path}: import the stores first (geo-engine import "
                           "STORES.geojson --db PATH), or name the database with --db")


def _check_output(path: Path, what: str, formats: tuple[str, ...]) -> None:
    if path.suffix.lower() not in formats:
        raise InvalidInput(f"{what} {path}: the format is chosen by the extension; use "
                           f"{', '.join(formats)}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidInput(f"{what} {path}: the folder {folder} does not exist; make it first")


def plan_run(input_path: Path, out: Path, report: Path | None, *, stores: int, radius_m: float,
             chunk_rows: int, lat_col: str | None, lon_col: str | None, id_col: str | None,
             address_col: str, postal_col: str) -> Plan:
    """Check a run before anything is written and say how the input will be read.

    ``lat_col``/``lon_col``/``id_col`` None: found by name (``lat``, ``latitude``, ``y`` and
    ``lon``, ``lng``, ``longitude``, ``x``; ``id``, ``customer_id``, ...), in any case.
    Raises :class:`InvalidInput` with one sentence for the first thing wrong.
    """
    if not input_path.is_file():
        raise InvalidInput(f"{input_path}: no such file")
    if stores == 0:
        raise InvalidInput("the database holds no stores, so every row would be scored against "
                           "none: import them first (geo-engine import STORES.geojson)")
    if not (math.isfinite(radius_m) and radius_m > 0):
        raise InvalidInput(f"--radius-m must be a distance in metres above 0, got {radius_m:g}")
    if chunk_rows < 1:
        raise InvalidInput(f"--chunk-rows must be 1 or more, got {chunk_rows}")
    _check_output(out, "--out", OUTPUT_FORMATS)
    if report is not None:
        _check_output(report, "--report", (".html",))
    plan = Plan()
    columns = _columns(input_path, plan)
    if columns is None:  # a format with geometry (Parquet, GeoPackage...): its columns are read later
        plan.lat_col, plan.lon_col, plan.id_col = lat_col or "lat", lon_col or "lon", id_col
        return plan
    plan.lat_col = _pick(columns, lat_col, LAT_NAMES, "--lat-col", input_path)
    plan.lon_col = _pick(columns, lon_col, LON_NAMES, "--lon-col", input_path)
    plan.id_col = _pick(columns, id_col, ID_NAMES, "--id-col", input_path)
    has_other = address_col in columns or postal_col in columns
    if (plan.lat_col is None or plan.lon_col is None) and not has_other:
        raise InvalidInput(f"{input_path}: no column to locate customers by; its columns are "
                           f"{', '.join(columns)}. Name them with --lat-col and --lon-col (or give "
                           f"an {address_col} or {postal_col} column)")
    if plan.lat_col and plan.lon_col and (plan.lat_col, plan.lon_col) != ("lat", "lon"):
        plan.notes.append(f"coordinates from the columns {plan.lat_col!r} and {plan.lon_col!r}")
    if plan.id_col and plan.id_col != "id":
        plan.notes.append(f"customer ids from the column {plan.id_col!r}")
    if plan.decimal == "," and plan.lat_col:
        plan.notes.append("decimal commas read as decimal points")
    return plan


def _pick(columns: list[str], given: str | None, names: tuple[str, ...], option: str,
          input_path: Path) -> str | None:
    if given is not None:
        if given not in columns:
            raise InvalidInput(f"{input_path}: no column {given!r} for {option} (its columns are "
                               f"{', '.join(columns)})")
        return given
    lowered = {c.strip().lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _columns(input_path: Path, plan: Plan) -> list[str] | None:
    """A CSV's header, with its delimiter and decimal mark worked out (None: not a CSV)."""
    if input_path.suffix.lower() != ".csv":
        return None
    with input_path.open("rb") as f:
        raw = f.read(_SAMPLE_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(raw) - 4:  # not just a character cut at the sample's end
            raise InvalidInput(f"{input_path}: not UTF-8 text (byte {exc.start}); save it as "
                               "UTF-8 CSV") from None
        text = raw[:exc.start].decode("utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip()][:50]
    if not lines:
        raise InvalidInput(f"{input_path}: the file is empty")
    sample = "\n".join(lines)
    try:
        plan.delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:  # the sniffer gives up on one column, or quotes: the split that holds
        plan.delimiter = _consistent_split(lines, input_path)
    rows = list(csv.reader(lines, delimiter=plan.delimiter))
    header = [c.strip() for c in rows[0]]
    body = rows[1:]
    if body and any(len(r) != len(header) for r in body[:20]):
        raise InvalidInput(f"{input_path}: its rows do not have the {len(header)} columns of its "
                           f"header when split on {plan.delimiter!r}; check the delimiter and "
                           "the quoting")
    if plan.delimiter != ",":
        plan.notes.append(f"columns separated by {_name(plan.delimiter)}")
    commas = sum(bool(_DECIMAL_COMMA.match(v)) for r in body for v in r)
    points = sum(bool(re.match(r"^\s*-?\d+\.\d+\s*$", v)) for r in body for v in r)
    if commas and points:
        raise InvalidInput(f"{input_path}: it mixes decimal commas and decimal points; use one")
    if commas:
        if plan.delimiter == ",":
            raise InvalidInput(f"{input_path}: decimal commas in a comma-separated file cannot be "
                               "read; separate the columns with ; or use decimal points")
        plan.decimal = ","
    return header


def _consistent_split(lines: list[str], input_path: Path) -> str:
    """The delimiter that splits every line into the same number of columns (the most of them);
    a comma for a file of one column."""
    best, width = None, 0
    for d in ",;\t|":
        counts = {len(r) for r in csv.reader(lines, delimiter=d)}
        if len(counts) == 1 and counts.pop() > width:
            best, width = d, len(next(csv.reader(lines[:1], delimiter=d)))
    if best is None:
        raise InvalidInput(f"{input_path}: cannot tell how its columns are separated (tried , ; "
                           "tab |): check the first lines, or save it as a comma-separated CSV")
    return best if width > 1 else ","


def _name(delimiter: str) -> str:
    return {";": "semicolons", "\t": "tabs", "|": "vertical bars"}.get(delimiter, repr(delimiter))

